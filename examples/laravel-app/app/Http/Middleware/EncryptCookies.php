<?php

namespace App\Http\Middleware;

use Illuminate\Cookie\Middleware\EncryptCookies as Middleware;

/**
 * Cookies are encrypted with APP_KEY, which lives in the shared .env:
 * the same key in every release keeps session cookies readable after a deploy.
 */
class EncryptCookies extends Middleware
{
    /**
     * @var array
     */
    protected $except = [
        //
    ];
}
