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

];
