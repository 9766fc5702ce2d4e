//! User and group names of this host, read from `/etc/passwd` and `/etc/group` (no NSS: a
//! serve needs no library of the system's to map them; directory-service users are not
//! there, which is why `--numeric-ids` exists).

use std::collections::HashMap;
use std::sync::OnceLock;

/// Names and ids of one database (users or groups).
#[derive(Debug, Default)]
pub struct Names {
    by_id: HashMap<u32, String>,
    by_name: HashMap<String, u32>,
}

impl Names {
    /// Parses a file in the format of `/etc/passwd` or `/etc/group` (name, then a field, then
    /// the id); lines that are not in it are skipped. Of two lines with one id or name, the
    /// first stands, as the C library would answer.
    pub fn parse(text: &str) -> Names {
        let mut n = Names::default();
        for line in text.lines() {
            let mut f = line.split(':');
            let (Some(name), Some(_), Some(id)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let Ok(id) = id.parse::<u32>() else { continue };
            if name.is_empty() || name.starts_with('#') || name.starts_with('+') {
                continue;
            }
            n.by_id.entry(id).or_insert_with(|| name.to_string());
            n.by_name.entry(name.to_string()).or_insert(id);
        }
        n
    }

    /// The name of `id`, if it has one here.
    pub fn name(&self, id: u32) -> Option<&str> {
        self.by_id.get(&id).map(String::as_str)
    }

    /// The id of `name`, if it is known here.
    pub fn id(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }
}

/// This host's users.
pub fn users() -> &'static Names {
    static U: OnceLock<Names> = OnceLock::new();
    U.get_or_init(|| Names::parse(&std::fs::read_to_string("/etc/passwd").unwrap_or_default()))
}

/// This host's groups.
pub fn groups() -> &'static Names {
    static G: OnceLock<Names> = OnceLock::new();
    G.get_or_init(|| Names::parse(&std::fs::read_to_string("/etc/group").unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways_and_odd_lines_are_skipped() {
        let n = Names::parse(
            "root:x:0:0:root:/root:/bin/bash\n\
             # a comment\n\
             +nis::::\n\
             broken\n\
             web:x:33:33::/var/www:/usr/sbin/nologin\n\
             alias:x:33:33::/:/bin/false\n\
             web:x:99:99::/:/bin/false\n",
        );
        assert_eq!(n.name(0), Some("root"));
        assert_eq!(n.name(33), Some("web"), "the first of one id");
        assert_eq!(n.id("web"), Some(33), "the first of one name");
        assert_eq!(n.id("alias"), Some(33));
        assert_eq!(n.id("nis"), None);
        assert_eq!(n.name(7), None);
        let g = Names::parse("wheel:x:10:root,me\n");
        assert_eq!((g.name(10), g.id("wheel")), (Some("wheel"), Some(10)));
    }
}
