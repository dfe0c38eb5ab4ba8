<?php
// zdd: switch `current` to the new release and tell the workers in the same instant.
//
// Run by zdd inside the new release, booted the way its `artisan` boots it (see boot.php):
// by the time this function runs, the app, its cache connection and its console kernel are
// ready, so the restart signal and the rename are microseconds apart. Without this, the
// window between the swap and a separately started `artisan queue:restart` (a whole PHP boot)
// lets workers still on the old code take jobs the new code dispatched.
//
// Environment: ZDD_SWAP_TARGET (what `current` will point at, e.g. releases/NAME),
// ZDD_SWAP_LINK (the path of `current`), ZDD_SWAP_TEMP (a temporary link next to it, renamed
// over `current`: at no moment is there no `current`), ZDD_SWAP_THEN (artisan commands, one
// per line, run just before the rename, e.g. queue:restart).
// Returns {"swapped": true, "commands": [{command, status, output}], "signal_us", "gap_us"}
// or {"swapped": false, "error": "..."} (nothing renamed; a failed command is in "commands").

function zdd_probe(): array
{
    $target = (string) getenv('ZDD_SWAP_TARGET');
    $link = (string) getenv('ZDD_SWAP_LINK');
    $temp = (string) getenv('ZDD_SWAP_TEMP');
    $then = array_values(array_filter(explode("\n", (string) getenv('ZDD_SWAP_THEN'))));
    if ($target === '' || $link === '' || $temp === '') {
        return ['swapped' => false, 'error' => 'ZDD_SWAP_TARGET, ZDD_SWAP_LINK and ZDD_SWAP_TEMP must be set'];
    }
    // Everything the commands need, resolved before the swap: the console application with
    // its commands, and the cache store the restart signals are written to.
    $kernel = app(\Illuminate\Contracts\Console\Kernel::class);
    $commands = $kernel->all();
    foreach ($then as $name) {
        if (!isset($commands[$name])) {
            return ['swapped' => false, 'error' => "the app has no artisan command `$name`"];
        }
    }
    app('cache')->store()->get('illuminate:queue:restart');
    // The console output classes, loaded now; COLUMNS spares Symfony a `stty` child process.
    putenv('COLUMNS=120');
    putenv('LINES=50');
    new \Illuminate\Console\OutputStyle(
        new \Symfony\Component\Console\Input\ArrayInput([]),
        new \Symfony\Component\Console\Output\BufferedOutput()
    );

    @unlink($temp);
    if (!@symlink($target, $temp)) {
        return ['swapped' => false, 'error' => "cannot create the link $temp: " . (error_get_last()['message'] ?? 'unknown error')];
    }
    // The signals, then the rename. Not the other way round: a worker that sees the signal
    // exits after its current job and is started again (by its supervisor) from `current`,
    // which takes milliseconds; the rename follows the signal within microseconds, so the new
    // worker runs the new code, and no old worker takes another job once signalled. Signalled
    // after the rename instead, a request to the new code could dispatch a job before the
    // signal and an old worker take it.
    $done = [];
    $started = hrtime(true);
    foreach ($then as $command) {
        try {
            // The command object itself, without the console application around it (no
            // terminal probing, no events).
            $buffer = new \Symfony\Component\Console\Output\BufferedOutput();
            $status = $commands[$command]->run(new \Symfony\Component\Console\Input\ArrayInput([]), $buffer);
            $output = $buffer->fetch();
        } catch (\Throwable $e) {
            $status = 1;
            $output = get_class($e) . ': ' . $e->getMessage();
        }
        $done[] = ['command' => $command, 'status' => $status, 'output' => trim($output)];
        if ($status !== 0) {
            @unlink($temp);
            return ['swapped' => false, 'commands' => $done];
        }
    }
    $signalled = hrtime(true);
    if (!@rename($temp, $link)) {
        $error = error_get_last()['message'] ?? 'unknown error';
        @unlink($temp);
        return ['swapped' => false, 'commands' => $done, 'error' => "cannot rename $temp over $link: $error"];
    }
    $swapped = hrtime(true);
    return [
        'swapped' => true,
        'commands' => $done,
        'signal_us' => intdiv($signalled - $started, 1000),
        'gap_us' => intdiv($swapped - $signalled, 1000),
    ];
}
