@extends('layout')

@section('content')
    <h1>zdd Laravel fixture</h1>
    <dl>
        <dt>Version</dt><dd id="version">{{ $version }}</dd>
        <dt>Release</dt><dd id="release">{{ $release }}</dd>
        <dt>Commit</dt><dd id="commit">{{ $commit }}</dd>
    </dl>
    <p>Laravel {{ app()->version() }} on PHP {{ PHP_VERSION }}</p>
@endsection
