<?php

namespace App\Http\Controllers;

use App\Jobs\RecordVersion;
use App\Support\Release;
use Illuminate\Http\Request;

/**
 * The routes a deploy test polls under load. Plain text, no sessions.
 * (Controllers, not closures, so `php artisan route:cache` works.)
 */
class ProbeController extends Controller
{
    /**
     * GET /health: 200 "ok version=.. release=.. commit=..", or 500 when the
     * release carries a HEALTH_FAIL file (a deliberately broken version).
     */
    public function health()
    {
        $body = sprintf(
            'version=%s release=%s commit=%s',
            Release::version(), Release::name(), Release::commit()
        );

        if (file_exists(base_path('HEALTH_FAIL'))) {
            return $this->text("fail $body\n", 500);
        }

        return $this->text("ok $body\n");
    }

    /**
     * GET /version: "<version> <release>".
     */
    public function version()
    {
        return $this->text(Release::version().' '.Release::name()."\n");
    }

    /**
     * GET /slow?ms=N: detects a request served by two releases.
     *
     * The start half comes from config (frozen by config:cache in this release)
     * and base_path(). The end half comes from App\Support\VersionProbe, a
     * class first autoloaded *after* the sleep, so its file is looked up at the
     * end of the request, plus a fresh read of VERSION under base_path(). If
     * those two end readings disagree (a release changed in place), both are
     * shown as "<probe>~<base>", so the end never equals the start.
     */
    public function slow(Request $request)
    {
        $startVersion = config('app.version');
        $startRelease = Release::name();

        $ms = max(0, min(60000, (int) $request->query('ms', 300)));
        usleep($ms * 1000);

        // Must stay the first use of VersionProbe in this request.
        $probe = \App\Support\VersionProbe::class;
        $endVersion = $probe::version();
        $endRelease = $probe::release();

        $baseVersion = trim((string) @file_get_contents(base_path('VERSION')));
        if ($baseVersion !== $endVersion) {
            $endVersion .= '~'.$baseVersion;
        }

        return $this->text("start=$startVersion/$startRelease end=$endVersion/$endRelease\n");
    }

    /**
     * GET /dispatch?n=K: queue K RecordVersion jobs; one id per line.
     */
    public function dispatchJobs(Request $request)
    {
        $n = max(1, min(1000, (int) $request->query('n', 1)));

        return $this->text(implode("\n", RecordVersion::dispatchMany($n))."\n");
    }

    private function text(string $body, int $status = 200)
    {
        return response($body, $status, [
            'Content-Type' => 'text/plain; charset=UTF-8',
            'X-Release' => Release::name(),
            'Cache-Control' => 'no-store',
        ]);
    }
}
