<?php

namespace App\Providers;

use App\Listeners\LogFailedJob;
use Illuminate\Foundation\Support\Providers\EventServiceProvider as ServiceProvider;
use Illuminate\Queue\Events\JobFailed;

class EventServiceProvider extends ServiceProvider
{
    /**
     * One real listener, so `php artisan event:cache` has something to cache.
     *
     * @var array
     */
    protected $listen = [
        JobFailed::class => [
            LogFailedJob::class,
        ],
    ];

    public function shouldDiscoverEvents()
    {
        return false;
    }
}
