<?php

use App\Http\Controllers\ProbeController;
use Illuminate\Support\Facades\Route;

/*
 * `probe` middleware: no sessions, no cookies. These are polled under load
 * during deploy tests.
 */
Route::get('/health', [ProbeController::class, 'health']);
Route::get('/version', [ProbeController::class, 'version']);
Route::get('/slow', [ProbeController::class, 'slow']);
Route::get('/dispatch', [ProbeController::class, 'dispatchJobs']);
