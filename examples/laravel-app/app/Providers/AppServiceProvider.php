<?php

namespace App\Providers;

use Illuminate\Support\ServiceProvider;

class AppServiceProvider extends ServiceProvider
{
    public function register()
    {
        //
    }

    public function boot()
    {
        // Laravel 8's SQLite connector refuses a missing database file, and the
        // file lives in shared storage, which starts empty. Create it when
        // artisan runs (the deploy runs `migrate` before any traffic).
        if ($this->app->runningInConsole()) {
            $config = $this->app['config'];
            $default = $config->get('database.default');
            $db = $config->get("database.connections.$default");

            if (($db['driver'] ?? null) === 'sqlite'
                && ($db['database'] ?? ':memory:') !== ':memory:'
                && ! file_exists($db['database'])
                && is_dir(dirname($db['database']))) {
                touch($db['database']);
            }
        }
    }
}
