//! zdd's integration tests: one binary, the real `zdd` executable against real git
//! repositories, directories, and (in `laravel`) real php-fpm and nginx.

mod support;

mod smoke;
