<?php

namespace App\Http\Middleware;

use Closure;
use Illuminate\Http\Request;

/**
 * Every answer says which release served it: `X-Release: <release directory's name>`.
 * zdd's health gate and watcher read it (`health_expect_release = auto`): a check that the
 * old code passes never passes a deploy, and answers from the old release after the swap are
 * counted. Register it in the global middleware of app/Http/Kernel.php.
 */
class NameRelease
{
    public function handle(Request $request, Closure $next)
    {
        $response = $next($request);
        // base_path() is reached through `current`; its real path names the release.
        $response->headers->set('X-Release', basename(realpath(base_path()) ?: base_path()));

        return $response;
    }
}
