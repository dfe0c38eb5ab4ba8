<?php

namespace App\Http\Middleware;

use Illuminate\Foundation\Http\Middleware\VerifyCsrfToken as Middleware;

class VerifyCsrfToken extends Middleware
{
    /**
     * Nothing is exempt: POST /session must carry the token from GET /csrf.
     *
     * @var array
     */
    protected $except = [
        //
    ];
}
