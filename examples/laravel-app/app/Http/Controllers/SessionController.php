<?php

namespace App\Http\Controllers;

use App\Support\Release;
use Illuminate\Http\Request;

/**
 * Routes behind the `web` middleware: file sessions + CSRF. A client that
 * keeps its cookie must see its counter grow across deploys.
 */
class SessionController extends Controller
{
    /**
     * GET / : an HTML page (a Blade view, so view:cache has work to do).
     */
    public function home()
    {
        return response()
            ->view('home', [
                'version' => Release::version(),
                'release' => Release::name(),
                'commit' => Release::commit(),
            ])
            ->header('X-Release', Release::name());
    }

    /**
     * GET or POST /session: increment a counter kept in the session.
     * POST goes through VerifyCsrfToken, so it needs `_token` from GET /csrf.
     */
    public function count(Request $request)
    {
        $count = (int) $request->session()->get('count', 0) + 1;
        $request->session()->put('count', $count);

        $id = substr(sha1($request->session()->getId()), 0, 12);

        return $this->text("count=$count id=$id\n");
    }

    /**
     * GET /csrf: the session's CSRF token, as plain text.
     */
    public function csrf(Request $request)
    {
        return $this->text($request->session()->token()."\n");
    }

    private function text(string $body)
    {
        return response($body, 200, [
            'Content-Type' => 'text/plain; charset=UTF-8',
            'X-Release' => Release::name(),
            'Cache-Control' => 'no-store',
        ]);
    }
}
