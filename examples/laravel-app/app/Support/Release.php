<?php

namespace App\Support;

/**
 * Who is answering: version, release name, commit.
 */
class Release
{
    /**
     * The code version (VERSION file, via config so config:cache freezes it).
     */
    public static function version(): string
    {
        return (string) config('app.version');
    }

    /**
     * The release name: basename of the real path of base_path(), i.e.
     * releases/<name> even when the code was reached through `current`.
     */
    public static function name(): string
    {
        return basename(realpath(base_path()) ?: base_path());
    }

    /**
     * The commit: the REVISION file the deploy tool writes, or "unknown".
     */
    public static function commit(): string
    {
        return trim((string) @file_get_contents(base_path('REVISION'))) ?: 'unknown';
    }
}
