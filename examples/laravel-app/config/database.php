<?php

return [

    'default' => env('DB_CONNECTION', 'sqlite'),

    'connections' => [

        /*
         * One SQLite file in the shared storage, so every release sees the same
         * data and queue. storage_path() goes through the release's `storage`
         * symlink to DEPLOY/shared/storage. The file is created by
         * AppServiceProvider when artisan runs (migrate), since Laravel 8's
         * SQLite connector refuses a missing file.
         */
        'sqlite' => [
            'driver' => 'sqlite',
            'url' => env('DATABASE_URL'),
            'database' => env('DB_DATABASE', storage_path('database.sqlite')),
            'prefix' => '',
            'foreign_key_constraints' => env('DB_FOREIGN_KEYS', true),
        ],

    ],

    'migrations' => 'migrations',

    // Used when QUEUE_CONNECTION=redis (needs the php-redis extension).
    'redis' => [
        'client' => env('REDIS_CLIENT', 'phpredis'),
        'default' => [
            'host' => env('REDIS_HOST', '127.0.0.1'),
            'port' => env('REDIS_PORT', 6379),
            'database' => env('REDIS_DB', 0),
        ],
    ],

];
