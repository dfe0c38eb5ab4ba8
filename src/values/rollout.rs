//! The fleet settings' values: `rollout_batch` (one size, or waves as Ansible's `serial`:
//! `[1, "10%", "50%", "100%"]`) and `max_fail` (how many hosts may be left behind: a count or
//! a percentage). Pure: values in, host counts out.

use rhai::Dynamic;

/// A number of hosts, or a share of all the run's hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Hosts(u64),
    /// 1 to 100.
    Percent(u64),
}

impl Size {
    /// One size: `3`, `"3"`, `"10%"`.
    pub fn read(value: &Dynamic) -> Result<Size, String> {
        if let Ok(n) = value.as_int() {
            return u64::try_from(n)
                .map(Size::Hosts)
                .map_err(|_| format!("`{n}` is below 0"));
        }
        if value.is_array() || value.is_map() || value.is_unit() {
            return Err(format!(
                "`{value}` is not a number of hosts or a percentage"
            ));
        }
        let text = value.to_string();
        let text = text.trim();
        let bad = || format!("`{text}` is not a number of hosts or a percentage (`10%`)");
        match text.strip_suffix('%') {
            Some(number) => {
                let percent: u64 = number.trim().parse().map_err(|_| bad())?;
                if !(1..=100).contains(&percent) {
                    return Err(format!("`{text}` must be a percentage from 1% to 100%"));
                }
                Ok(Size::Percent(percent))
            }
            None => text.parse().map(Size::Hosts).map_err(|_| bad()),
        }
    }

    /// How many of `hosts` this is, rounded up (a wave of `10%` of 5 hosts is 1 host).
    pub fn of_rounded_up(self, hosts: usize) -> usize {
        match self {
            Size::Hosts(n) => usize::try_from(n).unwrap_or(usize::MAX),
            Size::Percent(p) => (hosts as u64 * p).div_ceil(100) as usize,
        }
    }

    /// How many of `hosts` this is, rounded down (a budget of `10%` of 15 hosts is 1 host).
    pub fn of_rounded_down(self, hosts: usize) -> usize {
        match self {
            Size::Hosts(n) => usize::try_from(n).unwrap_or(usize::MAX),
            Size::Percent(p) => (hosts as u64 * p / 100) as usize,
        }
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Size::Hosts(n) => write!(f, "{n}"),
            Size::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// How the cutover walks the hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waves {
    /// The same number of hosts at a time (`rollout_batch = 2`), as many times as it takes.
    Batches(Size),
    /// Waves in order; the last takes every host left (`[1, "10%", "50%", "100%"]`).
    List(Vec<Size>),
}

impl Waves {
    pub fn read(value: &Dynamic) -> Result<Waves, String> {
        const EXPECTED: &str = "it must be a number of hosts (at least 1), a percentage (`25%`) \
                                or a list of waves (`[1, \"10%\", \"100%\"]`)";
        if !value.is_array() {
            return match Size::read(value) {
                Ok(Size::Hosts(0)) | Err(_) => Err(EXPECTED.to_string()),
                Ok(size) => Ok(Waves::Batches(size)),
            };
        }
        let items = value.clone().into_array().unwrap_or_default();
        if items.is_empty() {
            return Err(format!("the list is empty: {EXPECTED}"));
        }
        let sizes = items
            .iter()
            .map(|item| match Size::read(item) {
                Ok(Size::Hosts(0)) | Err(_) => Err(format!(
                    "its wave `{item}` must be a number of hosts (at least 1) or a percentage \
                     from 1% to 100%"
                )),
                Ok(size) => Ok(size),
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Waves::List(sizes))
    }

    /// The number of hosts in each wave, for a run of `hosts` hosts: every host once, in
    /// order, no wave empty.
    pub fn split(&self, hosts: usize) -> Vec<usize> {
        let mut waves = Vec::new();
        let mut left = hosts;
        match self {
            Waves::Batches(size) => {
                let each = size.of_rounded_up(hosts).max(1);
                while left > 0 {
                    let wave = each.min(left);
                    waves.push(wave);
                    left -= wave;
                }
            }
            Waves::List(sizes) => {
                for (index, size) in sizes.iter().enumerate() {
                    if left == 0 {
                        break;
                    }
                    let wave = if index + 1 == sizes.len() {
                        left
                    } else {
                        size.of_rounded_up(hosts).clamp(1, left)
                    };
                    waves.push(wave);
                    left -= wave;
                }
            }
        }
        waves
    }
}

/// `max_fail`: how many of `hosts` may be left behind (0: all or nothing).
pub fn budget(value: Option<&Dynamic>, hosts: usize) -> Result<usize, String> {
    match value {
        None => Ok(0),
        Some(value) if value.is_unit() => Ok(0),
        Some(value) => Ok(Size::read(value)
            .map_err(|_| "it must be a number of hosts or a percentage (`10%`)".to_string())?
            .of_rounded_down(hosts)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Dynamic {
        Dynamic::from_array(items.iter().map(|s| Dynamic::from(s.to_string())).collect())
    }

    #[test]
    fn waves_as_ansible_serial_with_the_last_taking_the_rest() {
        let waves = Waves::read(&list(&["1", "10%", "50%", "100%"])).unwrap();
        assert_eq!(waves.split(100), [1, 10, 50, 39]);
        assert_eq!(waves.split(20), [1, 2, 10, 7]);
        assert_eq!(waves.split(3), [1, 1, 1]);
        assert_eq!(waves.split(1), [1]);
        assert_eq!(waves.split(0), Vec::<usize>::new());
        let waves = Waves::read(&list(&["1", "50%", "100%"])).unwrap();
        assert_eq!(waves.split(20), [1, 10, 9]);
        // The last wave takes the rest even when it is smaller than that.
        let waves = Waves::read(&list(&["1", "5"])).unwrap();
        assert_eq!(waves.split(20), [1, 19]);
    }

    #[test]
    fn percentages_round_up_and_batches_repeat() {
        assert_eq!(Size::Percent(10).of_rounded_up(5), 1);
        assert_eq!(Size::Percent(34).of_rounded_up(3), 2);
        let batches = Waves::read(&Dynamic::from_int(3)).unwrap();
        assert_eq!(batches.split(7), [3, 3, 1]);
        let batches = Waves::read(&Dynamic::from("25%")).unwrap();
        assert_eq!(batches.split(10), [3, 3, 3, 1]);
    }

    #[test]
    fn bad_waves_are_refused_in_words() {
        for bad in [
            Dynamic::from_int(0),
            Dynamic::from_int(-1),
            Dynamic::from("0%"),
            Dynamic::from("101%"),
            Dynamic::from("ten"),
            Dynamic::from("1.5"),
            list(&[]),
            list(&["1", "0"]),
            list(&["1", "x%"]),
        ] {
            assert!(Waves::read(&bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn budgets_round_down() {
        assert_eq!(budget(None, 20).unwrap(), 0);
        assert_eq!(budget(Some(&Dynamic::from_int(1)), 20).unwrap(), 1);
        assert_eq!(budget(Some(&Dynamic::from("10%")), 15).unwrap(), 1);
        assert_eq!(budget(Some(&Dynamic::from("10%")), 9).unwrap(), 0);
        assert_eq!(budget(Some(&Dynamic::from_int(0)), 9).unwrap(), 0);
        assert!(budget(Some(&Dynamic::from("-1")), 9).is_err());
    }
}
