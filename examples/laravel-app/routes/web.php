<?php

use App\Http\Controllers\SessionController;
use Illuminate\Support\Facades\Route;

/*
 * `web` middleware: encrypted cookies, file sessions, CSRF.
 */
Route::get('/', [SessionController::class, 'home']);
Route::get('/session', [SessionController::class, 'count']);
Route::post('/session', [SessionController::class, 'count']);
Route::get('/csrf', [SessionController::class, 'csrf']);
