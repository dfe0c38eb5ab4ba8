<?php
// zdd: does php-fpm serve requests again? Asks it (FastCGI, on the socket in argv[1]) for a
// script that does not exist; any answer from a worker (the 404 "Primary script unknown") means
// yes: exit 0. No connection or no answer within 5 s: exit 1. Run with `php -r`.
$socket = @stream_socket_client($argv[1], $errno, $error, 2.0);
if (!$socket) {
    fwrite(STDERR, "cannot connect to {$argv[1]}: $error\n");
    exit(1);
}
stream_set_timeout($socket, 5);
$record = function (int $type, string $body): string {
    return pack('CCnnCC', 1, $type, 1, strlen($body), 0, 0) . $body;
};
$pair = function (string $name, string $value): string {
    return chr(strlen($name)) . chr(strlen($value)) . $name . $value;
};
$params = $pair('SCRIPT_FILENAME', '/zdd-ping-does-not-exist.php')
    . $pair('REQUEST_METHOD', 'GET')
    . $pair('SERVER_PROTOCOL', 'HTTP/1.1');
// BEGIN_REQUEST (responder, close), PARAMS, end of PARAMS, end of STDIN.
fwrite($socket, $record(1, pack('nCxxxxx', 1, 0)) . $record(4, $params) . $record(4, '') . $record(5, ''));
$header = fread($socket, 8);
if (strlen($header) !== 8) {
    fwrite(STDERR, "php-fpm did not answer\n");
    exit(1);
}
// FCGI_STDOUT (6), FCGI_STDERR (7) or FCGI_END_REQUEST (3): a worker answered.
exit(in_array(ord($header[1]), [3, 6, 7], true) ? 0 : 1);
