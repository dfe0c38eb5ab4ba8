<?php
// zdd: list the classes of the jobs waiting in the app's queue, and which of them the release
// this probe runs in does not have. Run by zdd inside the booted app (see boot.php):
// returns {"driver": ..., "connection": ..., "classes": {class: count},
// "missing": {class: count}, "pretend": ...} or {"error": "..."}. Reads only; changes nothing.
// Redis: the connection's default queue, and those in ZDD_QUEUES (comma-separated, from zdd's
// `queue_names` setting); the database driver's table holds every queue.

function zdd_class_of(string $payload): ?string
{
    $job = json_decode($payload, true);
    if (!is_array($job)) {
        return null;
    }
    // Queued closures, listeners and mailables name their wrapper in `data.commandName`;
    // plain jobs too. `displayName` is what Horizon shows.
    return $job['data']['commandName'] ?? $job['displayName'] ?? $job['job'] ?? null;
}

function zdd_probe(): array
{
    $connection = config('queue.default');
    $settings = config("queue.connections.$connection", []);
    $driver = $settings['driver'] ?? 'unknown';
    $payloads = [];
    if ($driver === 'database') {
        $db = app('db')->connection($settings['connection'] ?? null);
        $table = $settings['table'] ?? 'jobs';
        if ($db->getSchemaBuilder()->hasTable($table)) {
            $payloads = $db->table($table)->pluck('payload')->all();
        }
    } elseif ($driver === 'redis') {
        $redis = app('redis')->connection($settings['connection'] ?? 'default');
        $queues = array_unique(array_merge([$settings['queue'] ?? 'default'], explode(',', (string) getenv('ZDD_QUEUES'))));
        foreach (array_filter($queues) as $queue) {
            $key = "queues:$queue";
            $payloads = array_merge(
                $payloads,
                $redis->lrange($key, 0, -1),
                $redis->zrange("$key:delayed", 0, -1),
                $redis->zrange("$key:reserved", 0, -1)
            );
        }
    } elseif ($driver === 'sync' || $driver === 'null') {
        $payloads = [];
    } else {
        return ['error' => "queue driver `$driver` is not one zdd can read (database, redis)"];
    }
    $classes = [];
    $missing = [];
    foreach ($payloads as $payload) {
        $class = zdd_class_of((string) $payload);
        if ($class === null) {
            continue;
        }
        $classes[$class] = ($classes[$class] ?? 0) + 1;
        if (!class_exists($class)) {
            $missing[$class] = ($missing[$class] ?? 0) + 1;
        }
    }
    return [
        'driver' => $driver,
        'connection' => $connection,
        'classes' => (object) $classes,
        'missing' => (object) $missing,
        'pretend' => zdd_pretend(),
    ];
}

// ZDD_PRETEND=1: also `migrate --pretend --force` in this process (the migrations gate reads
// its output instead of starting PHP again). null when not asked or when it failed: the
// migrations gate then runs it itself, and reports the failure in its own words.
function zdd_pretend(): ?string
{
    if (getenv('ZDD_PRETEND') !== '1') {
        return null;
    }
    putenv('COLUMNS=120');
    $kernel = app(\Illuminate\Contracts\Console\Kernel::class);
    try {
        $status = $kernel->call('migrate', ['--pretend' => true, '--force' => true]);
    } catch (\Throwable $e) {
        return null;
    }
    return $status === 0 ? $kernel->output() : null;
}
