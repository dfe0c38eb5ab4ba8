<?php

namespace App\Jobs;

use App\Support\Release;
use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;
use Illuminate\Support\Str;

/**
 * A queued job that records which code ran it and which code dispatched it:
 * appends "<id> <version> <release> <dispatched by release>\n" to
 * storage/app/jobs.log (shared storage). A test dispatches ids and checks each
 * appears exactly once, run by the expected version, and never by code older
 * than the code that dispatched it.
 */
class RecordVersion implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable, SerializesModels;

    /** @var string */
    public $id;

    /** @var string The release whose code dispatched the job. */
    public $dispatchedBy;

    public function __construct(string $id)
    {
        $this->id = $id;
        $this->dispatchedBy = Release::name();
    }

    public function handle(): void
    {
        $line = sprintf("%s %s %s %s\n", $this->id, Release::version(), Release::name(), $this->dispatchedBy ?? '-');

        // One short append per job; LOCK_EX keeps concurrent workers' lines whole.
        file_put_contents(storage_path('app/jobs.log'), $line, FILE_APPEND | LOCK_EX);
    }

    /**
     * Dispatch $count jobs with fresh unique ids and return the ids.
     *
     * @return string[]
     */
    public static function dispatchMany(int $count): array
    {
        $ids = [];

        for ($i = 0; $i < $count; $i++) {
            $ids[] = $id = (string) Str::uuid();
            static::dispatch($id);
        }

        return $ids;
    }
}
