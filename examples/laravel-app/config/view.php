<?php

return [

    'paths' => [
        resource_path('views'),
    ],

    /*
     * Compiled views land in the shared storage. Their file names hash the
     * source path, which contains the release name, so releases never share
     * a compiled view. They must be writable by the PHP-FPM user: Blade
     * recompiles a view whose source is as new as its compiled file.
     */
    'compiled' => env(
        'VIEW_COMPILED_PATH',
        realpath(storage_path('framework/views')) ?: storage_path('framework/views')
    ),

];
