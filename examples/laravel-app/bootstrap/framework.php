<?php

/*
 * Load Laravel from Debian's php-laravel-framework package (/usr/share/php),
 * not from vendor/: the app has no composer requirements at all. Composer
 * includes this file from vendor/autoload.php ("autoload.files"), so every
 * entry point (public/index.php, artisan, queue workers) gets the framework.
 */
if (! class_exists(\Illuminate\Foundation\Application::class, false)) {
    $framework = stream_resolve_include_path('Illuminate/autoload.php')
        ?: '/usr/share/php/Illuminate/autoload.php';

    require_once $framework;
}
