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
    // The app the commands run in: `config:cache` makes a fresh one to read the config
    // files, and `app()` names that one afterwards.
    $app = app();
    $kernel = $app->make(\Illuminate\Contracts\Console\Kernel::class);
    $done = [];
    foreach (array_filter(explode("\n", (string) getenv('ZDD_COMMANDS'))) as $command) {
        try {
            if ($command === 'view:cache') {
                [$status, $output] = zdd_view_cache($app, $kernel);
            } else {
                $status = $kernel->call($command);
                $output = $kernel->output();
            }
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

// `view:cache` without its `view:clear` of the shared compiled views: that deletes the files the
// live release is serving from, and its requests in flight fail (`filemtime(): stat failed`, a
// compiled view gone between Blade's check and its include). The clear goes to a private
// directory (`view:clear` reads `view.compiled` when it runs), what is compiled there is
// renamed into place, and the compiled views of releases that are neither this one nor the
// live one (their `ENDPATH` names a directory beside this release) are removed.
function zdd_view_cache($app, $kernel): array
{
    $config = $app['config'];
    $compiled = $config->get('view.compiled');
    if (!is_string($compiled) || $compiled === '' || !is_dir($compiled)) {
        return [$kernel->call('view:cache'), $kernel->output()];
    }
    $private = $compiled . '/.zdd-views-' . getmypid();
    if (!is_dir($private) && !mkdir($private)) {
        return [1, "cannot create {$private}"];
    }
    $config->set('view.compiled', $private);
    try {
        $status = $kernel->call('view:cache');
        $output = $kernel->output();
    } finally {
        $config->set('view.compiled', $compiled);
    }
    // Compiled there when the Blade compiler was made during the call; else it wrote into
    // `$compiled` itself.
    foreach (glob($private . '/*') ?: [] as $file) {
        if (!rename($file, $compiled . '/' . basename($file))) {
            $status = 1;
            $output .= "\ncannot move {$file} into {$compiled}";
        }
    }
    @rmdir($private);
    if ($status === 0) {
        zdd_forget_compiled_views($compiled, $app->basePath());
    }
    return [$status, $output];
}

function zdd_forget_compiled_views(string $compiled, string $release): void
{
    $releases = dirname($release);
    $live = realpath(dirname($releases) . '/current');
    $keep = array_filter([$release, $live === false ? null : $live]);
    foreach (glob($compiled . '/*.php') ?: [] as $file) {
        $handle = @fopen($file, 'r');
        if ($handle === false) {
            continue;
        }
        $size = filesize($file);
        fseek($handle, max(0, $size - 4096));
        $tail = (string) fread($handle, 4096);
        fclose($handle);
        if (!preg_match('~/\*\*PATH (.*) ENDPATH\*\*/~', $tail, $match)) {
            continue;
        }
        $source = $match[1];
        if (strpos($source, $releases . '/') !== 0) {
            continue;
        }
        $ours = false;
        foreach ($keep as $dir) {
            if (strpos($source, $dir . '/') === 0) {
                $ours = true;
            }
        }
        if (!$ours) {
            @unlink($file);
        }
    }
}
