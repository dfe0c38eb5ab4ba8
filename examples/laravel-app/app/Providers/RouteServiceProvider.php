<?php

namespace App\Providers;

use Illuminate\Foundation\Support\Providers\RouteServiceProvider as ServiceProvider;
use Illuminate\Support\Facades\Route;

class RouteServiceProvider extends ServiceProvider
{
    public const HOME = '/';

    /**
     * Every route points at a controller (no closures), so `route:cache` works.
     */
    public function boot()
    {
        $this->routes(function () {
            Route::middleware('probe')
                ->group(base_path('routes/probe.php'));

            Route::middleware('web')
                ->group(base_path('routes/web.php'));
        });
    }
}
