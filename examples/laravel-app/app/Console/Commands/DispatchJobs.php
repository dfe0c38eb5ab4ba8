<?php

namespace App\Console\Commands;

use App\Jobs\RecordVersion;
use Illuminate\Console\Command;

class DispatchJobs extends Command
{
    /**
     * @var string
     */
    protected $signature = 'app:dispatch {count : How many RecordVersion jobs to queue}';

    /**
     * @var string
     */
    protected $description = 'Queue RecordVersion jobs and print their ids, one per line';

    public function handle(): int
    {
        $count = (int) $this->argument('count');

        if ($count < 1) {
            $this->error('count must be a positive integer');

            return 2;
        }

        foreach (RecordVersion::dispatchMany($count) as $id) {
            $this->line($id);
        }

        return 0;
    }
}
