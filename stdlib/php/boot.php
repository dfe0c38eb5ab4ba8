<?php
// zdd: run a probe inside the app, booted exactly as the app's own `artisan` boots it.
//
// zdd runs `php -d auto_prepend_file=<this file> artisan --version` in the release: the app's
// own `artisan` loads whatever autoloader and bootstrap files it loads, and its console kernel
// bootstraps the app (config, providers, facades) before printing the version. When `artisan`
// exits, the shutdown function below runs in that booted app: it calls `zdd_probe()` (appended
// after this prelude) and prints its result as one JSON line after the marker line.
// When the app did not boot, it prints {"not_booted": "..."} instead.

function zdd_emit(array $result): void
{
    echo "\n" . 'zdd-probe-result' . "\n" . json_encode($result) . "\n";
}

register_shutdown_function(function () {
    $booted = function_exists('app')
        && class_exists(\Illuminate\Foundation\Application::class, false)
        && app() instanceof \Illuminate\Foundation\Application
        && app()->hasBeenBootstrapped();
    if (!$booted) {
        $last = error_get_last();
        zdd_emit(['not_booted' => $last ? $last['message'] . ' in ' . $last['file'] . ':' . $last['line'] : '']);
        return;
    }
    try {
        zdd_emit(zdd_probe());
    } catch (\Throwable $e) {
        zdd_emit(['error' => get_class($e) . ': ' . $e->getMessage()]);
    }
});
