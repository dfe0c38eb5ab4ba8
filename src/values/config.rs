//! Configuration values: the defaults, `-o KEY=VALUE` parsing, and turning values into text.

use std::collections::BTreeMap;

use rhai::{Array, Dynamic};

/// Deployer's defaults, where the recipe sets nothing.
pub fn defaults() -> BTreeMap<String, Dynamic> {
    let mut map = BTreeMap::new();
    let empty = || Dynamic::from_array(Array::new());
    map.insert("branch".into(), Dynamic::from("HEAD"));
    map.insert("keep_releases".into(), Dynamic::from_int(5));
    map.insert("shared_files".into(), empty());
    map.insert("shared_dirs".into(), empty());
    map.insert("writable_dirs".into(), empty());
    map.insert("writable_mode".into(), Dynamic::from("chmod"));
    map.insert("writable_chmod_mode".into(), Dynamic::from("ug+rwX"));
    map.insert("writable_recursive".into(), Dynamic::from_bool(true));
    map
}

/// `-o KEY=VALUE`: `true`/`false`, integers and comma lists become such values.
pub fn parse_override(text: &str) -> Result<(String, Dynamic), String> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(format!("`{text}` is not KEY=VALUE"));
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("`{text}` has no key before `=`"));
    }
    Ok((key.to_string(), parse_value(value)))
}

fn parse_value(value: &str) -> Dynamic {
    match value {
        "true" => return Dynamic::from_bool(true),
        "false" => return Dynamic::from_bool(false),
        _ => {}
    }
    // Only text that reads back the same is a number: `007` and `+5` stay text (a branch).
    if let Ok(number) = value.parse::<i64>() {
        if number.to_string() == value {
            return Dynamic::from_int(number);
        }
    }
    if value.contains(',') {
        let items: Array = value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Dynamic::from(s.to_string()))
            .collect();
        return Dynamic::from_array(items);
    }
    Dynamic::from(value.to_string())
}

/// A value as the words it stands for: a list is several words, anything else one.
pub fn words(value: &Dynamic) -> Result<Vec<String>, String> {
    if value.is_array() {
        let array = value.clone().into_array().unwrap_or_default();
        let mut words = Vec::new();
        for item in &array {
            words.extend(words_of_scalar(item)?);
        }
        return Ok(words);
    }
    words_of_scalar(value)
}

fn words_of_scalar(value: &Dynamic) -> Result<Vec<String>, String> {
    if value.is_unit() {
        return Ok(Vec::new());
    }
    if value.is_map() || value.is_array() {
        return Err(format!("a {} cannot be used as text", value.type_name()));
    }
    Ok(vec![value.to_string()])
}

/// A value as one string (lists joined with spaces).
pub fn text(value: &Dynamic) -> Result<String, String> {
    Ok(words(value)?.join(" "))
}

/// A value as a list of strings (a single string is a list of one; comma lists from `-o`).
pub fn list(value: &Dynamic) -> Result<Vec<String>, String> {
    if value.is_string() {
        let s = value.to_string();
        if s.is_empty() {
            return Ok(Vec::new());
        }
        return Ok(vec![s]);
    }
    words(value)
}

/// A value as a boolean (`"true"`/`"false"`/`1`/`0` accepted).
pub fn boolean(value: &Dynamic) -> Result<bool, String> {
    if let Ok(b) = value.as_bool() {
        return Ok(b);
    }
    if let Ok(i) = value.as_int() {
        return Ok(i != 0);
    }
    match value.to_string().as_str() {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" | "" => Ok(false),
        other => Err(format!("`{other}` is not true or false")),
    }
}

/// A value as a duration in seconds between 0 and 3600 (`1`, `0.5`, `"2s"`, `"5m"`, `"1h"`).
pub fn seconds(value: &Dynamic) -> Result<std::time::Duration, String> {
    let in_words = || {
        let text = value.to_string();
        let text = text.trim();
        let (number, unit) = match text.char_indices().last() {
            Some((at, 'm')) => (&text[..at], 60.0),
            Some((at, 'h')) => (&text[..at], 3600.0),
            Some((at, 's')) => (&text[..at], 1.0),
            _ => (text, 1.0),
        };
        number.parse::<f64>().ok().map(|n| n * unit)
    };
    let number = value
        .as_float()
        .ok()
        .or_else(|| value.as_int().ok().map(|i| i as f64))
        .or_else(in_words)
        .filter(|n| n.is_finite())
        .ok_or_else(|| format!("`{value}` is not a number of seconds"))?;
    if !(0.0..=3600.0).contains(&number) {
        return Err(format!("`{value}` must be between 0 and 3600 seconds"));
    }
    Ok(std::time::Duration::from_secs_f64(number))
}

/// A value as a non-negative integer.
pub fn count(value: &Dynamic) -> Result<u64, String> {
    if let Ok(i) = value.as_int() {
        if i >= 0 {
            return Ok(i as u64);
        }
    }
    value
        .to_string()
        .parse::<u64>()
        .map_err(|_| format!("`{value}` is not a whole number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_seconds_minutes_and_hours() {
        let secs = |text: &str| seconds(&Dynamic::from(text.to_string())).map(|d| d.as_secs_f64());
        assert_eq!(secs("90"), Ok(90.0));
        assert_eq!(secs("2s"), Ok(2.0));
        assert_eq!(secs("5m"), Ok(300.0));
        assert_eq!(secs("1h"), Ok(3600.0));
        assert!(secs("2h").is_err());
        assert!(secs("m").is_err());
        assert!(secs("NaN").is_err());
        assert!(secs("5 minutes").is_err());
    }

    #[test]
    fn overrides_parse_types() {
        let (k, v) = parse_override("keep_releases=3").unwrap();
        assert_eq!(k, "keep_releases");
        assert_eq!(v.as_int().unwrap(), 3);
        assert!(parse_override("x=true").unwrap().1.as_bool().unwrap());
        let list = parse_override("shared_dirs=storage, cache").unwrap().1;
        assert_eq!(words(&list).unwrap(), ["storage", "cache"]);
        assert_eq!(
            parse_override("branch=v2.3.0").unwrap().1.to_string(),
            "v2.3.0"
        );
        assert_eq!(parse_override("a=b=c").unwrap().1.to_string(), "b=c");
        assert!(parse_override("novalue").is_err());
        for text in ["007", "+5", "-0", "00"] {
            let value = parse_override(&format!("branch={text}")).unwrap().1;
            assert!(value.is_string(), "{text}");
            assert_eq!(value.to_string(), text);
        }
        assert_eq!(parse_override("n=-3").unwrap().1.as_int().unwrap(), -3);
    }
}
