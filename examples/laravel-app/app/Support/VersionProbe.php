<?php

namespace App\Support;

/**
 * Used only by GET /slow, and only after its sleep, so that the autoloader
 * looks this file up at the *end* of the request. Its answers come from its
 * own location on disk (__DIR__), not from the app container: if the end of
 * a request ran another release's code, this says which.
 */
class VersionProbe
{
    public static function version(): string
    {
        return trim((string) @file_get_contents(__DIR__.'/../../VERSION')) ?: 'unknown';
    }

    public static function release(): string
    {
        $root = realpath(__DIR__.'/../..');

        return $root === false ? 'unknown' : basename($root);
    }
}
