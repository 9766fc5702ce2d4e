//! `synk --help`, synk(1) and the README say the same things: the same options, the same exit
//! statuses and the same one-line rule of how a winner is chosen. An option added to one and
//! not the others, or a code documented in one place only, fails here.

use std::collections::BTreeSet;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(rel: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{rel}")).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn help() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_synk"))
        .arg("--help")
        .output()
        .expect("synk --help");
    assert!(out.status.success(), "synk --help: {:?}", out.status);
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

/// The lines of `text` after the line `start` holds, up to the first line `end` says ends it.
fn section<'a>(text: &'a str, start: &str, end: impl Fn(&str) -> bool) -> Vec<&'a str> {
    let mut lines = text.lines().skip_while(|l| !l.contains(start));
    assert!(lines.next().is_some(), "no {start:?}");
    lines.take_while(|l| !end(l)).collect()
}

/// The option words (`-h`, `--host`) among `words`.
fn options<'a>(words: impl Iterator<Item = &'a str>) -> Vec<String> {
    words
        .map(|w| w.trim_end_matches("..."))
        .filter(|w| {
            w.starts_with('-')
                && w.len() >= 2
                && w[1..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-')
        })
        .map(str::to_string)
        .collect()
}

fn help_options(help: &str) -> BTreeSet<String> {
    section(help, "Options:", |l| l.starts_with("Exit status:"))
        .into_iter()
        .filter(|l| l.trim_start().starts_with('-'))
        // The option's own words come before its description's two-space gap.
        .flat_map(|l| options(l.trim_start().split([' ', ','])))
        // An optional value: `--serve[=<HEX>]` is `--serve`.
        .map(|o| o.split('[').next().unwrap_or_default().to_string())
        .collect()
}

fn man_options(man: &str) -> BTreeSet<String> {
    section(man, ".Sh OPTIONS", |l| l.starts_with(".Sh "))
        .into_iter()
        .filter(|l| l.starts_with(".It Fl "))
        .flat_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words
                .windows(2)
                .filter(|w| w[0] == "Fl")
                .map(|w| format!("-{}", w[1].replace("\\-", "-")))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn readme_options(readme: &str) -> BTreeSet<String> {
    section(readme, "| option | meaning |", str::is_empty)
        .into_iter()
        .skip(1)
        .flat_map(|row| {
            let cell = &row[2..row[2..].find(" | ").map_or(row.len(), |i| i + 2)];
            options(cell.split([' ', ',', '`', '/']))
        })
        .collect()
}

fn codes<'a>(cells: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
    cells
        .flat_map(|c| c.split('/'))
        .map(str::to_string)
        .collect()
}

#[test]
fn help_man_page_and_readme_list_the_same_options() {
    let (help, man, readme) = (help(), read("man/synk.1"), read("README.md"));
    let from_help = help_options(&help);
    for must in [
        "--host",
        "-h",
        "--help",
        "--version",
        "-F",
        "--restore",
        "--lock-wait",
    ] {
        assert!(
            from_help.contains(must),
            "{must} not in --help: {from_help:?}"
        );
    }
    assert_eq!(man_options(&man), from_help, "synk(1) against --help");
    assert_eq!(readme_options(&readme), from_help, "README against --help");
}

#[test]
fn help_man_page_and_readme_list_the_same_exit_statuses() {
    let (help, man, readme) = (help(), read("man/synk.1"), read("README.md"));
    let from_help = codes(
        section(&help, "Exit status:", str::is_empty)
            .into_iter()
            .filter_map(|l| l.strip_prefix("  ")?.split_whitespace().next()),
    );
    let all: BTreeSet<String> = ["0", "1", "2", "3", "4", "129", "130", "143"]
        .map(String::from)
        .into();
    assert_eq!(from_help, all, "--help");
    let from_man = codes(
        section(&man, ".Sh EXIT STATUS", |l| l.starts_with(".Sh "))
            .into_iter()
            .filter_map(|l| l.strip_prefix(".It ")),
    );
    assert_eq!(from_man, all, "synk(1)");
    let from_readme = codes(
        section(&readme, "| code | meaning |", str::is_empty)
            .into_iter()
            .skip(1)
            .filter_map(|l| l.split(" | ").next()?.strip_prefix("| ")),
    );
    assert_eq!(from_readme, all, "README");
}

#[test]
fn help_man_page_and_readme_state_the_same_winner_rule() {
    let flat = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
    let rule = synk::cli::WINNER_RULE;
    assert!(rule.contains("never the newest clock"), "{rule}");
    for (what, text) in [
        ("--help", help()),
        ("synk(1)", read("man/synk.1")),
        ("README", read("README.md")),
    ] {
        assert!(flat(&text).contains(rule), "{what} lacks the rule: {rule}");
        assert!(
            !text.contains("version with the newest modification time is copied"),
            "{what} still says the newest mtime wins"
        );
    }
}

#[test]
fn usage_takes_a_profile_and_optional_paths() {
    let help = help();
    assert!(
        help.contains("Usage: synk [@PROFILE] [OPTIONS] [-p PORT] [-h HOST]... [--] [PATH]..."),
        "{help}"
    );
    let readme = read("README.md");
    assert!(
        readme.contains("synk [@PROFILE] [OPTIONS] [-p PORT] [-h HOST]... [--] [PATH...]"),
        "README usage"
    );
}
