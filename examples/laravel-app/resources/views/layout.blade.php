<!DOCTYPE html>
<html lang="en">
<head>
    <meta charset="utf-8">
    <title>{{ config('app.name') }} {{ $version ?? '' }}</title>
</head>
<body>
    @yield('content')
</body>
</html>
