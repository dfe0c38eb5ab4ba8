<?php
// zdd: several artisan commands in one PHP start, the way Laravel's own `optimize` runs its
// cache commands (`$this->call(...)` in one process). Run by zdd inside the booted app (see
// boot.php). ZDD_COMMANDS: the commands, one per line; stops at the first that fails.
// Returns {"commands": [{command, status, output}], "listing": `list --format=json`}.

function zdd_probe(): array
{
    // Spares Symfony's console a `stty` child process per command.
    putenv('COLUMNS=120');
    putenv('LINES=50');
    $kernel = app(\Illuminate\Contracts\Console\Kernel::class);
    $done = [];
    foreach (array_filter(explode("\n", (string) getenv('ZDD_COMMANDS'))) as $command) {
        try {
            $status = $kernel->call($command);
            $output = $kernel->output();
        } catch (\Throwable $e) {
            $status = 1;
            $output = get_class($e) . ': ' . $e->getMessage();
        }
        $done[] = ['command' => $command, 'status' => $status, 'output' => trim($output)];
        if ($status !== 0) {
            break;
        }
    }
    // What `artisan list --format=json` says, from this process: zdd reads the app's commands
    // and version from it without another PHP start.
    try {
        $kernel->call('list', ['--format' => 'json']);
        $listing = $kernel->output();
    } catch (\Throwable $e) {
        $listing = null;
    }
    return ['commands' => $done, 'listing' => $listing];
}
