<?php

namespace App\Console;

use Illuminate\Console\Scheduling\Schedule;
use Illuminate\Foundation\Console\Kernel as ConsoleKernel;

class Kernel extends ConsoleKernel
{
    /**
     * Listed explicitly (no directory scan), so the command list is the same
     * with or without caches.
     *
     * @var array
     */
    protected $commands = [
        Commands\DispatchJobs::class,
    ];

    protected function schedule(Schedule $schedule)
    {
        //
    }

    protected function commands()
    {
        //
    }
}
