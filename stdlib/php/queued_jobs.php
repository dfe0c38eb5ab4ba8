<?php
// zdd: list the classes of the jobs waiting in the app's queue, and which of them the release
// this script runs in does not have. Run with the release as the working directory:
//     php .zdd-queued-jobs.php
// Prints one JSON object: {"driver": ..., "connection": ..., "classes": {class: count},
// "missing": {class: count}} or {"error": "..."}. Reads only; changes nothing.

require __DIR__ . '/vendor/autoload.php';
$app = require __DIR__ . '/bootstrap/app.php';
$app->make(Illuminate\Contracts\Console\Kernel::class)->bootstrap();

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

try {
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
        echo json_encode(['error' => "queue driver `$driver` is not one zdd can read (database, redis)"]);
        exit(0);
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
    echo json_encode([
        'driver' => $driver,
        'connection' => $connection,
        'classes' => (object) $classes,
        'missing' => (object) $missing,
    ]);
} catch (Throwable $e) {
    echo json_encode(['error' => get_class($e) . ': ' . $e->getMessage()]);
}
