//! Each MongoDB collection has one owning service, and no other service's
//! code names it: the owners are the table in `docs/architecture.md`, and
//! the collections a service uses are what its code passes to
//! `collection(...)`. A service that needs another's data asks for it over
//! the bus or keeps a copy fed by the owner's events.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates that run as services, by the name the table gives them.
const SERVICES: &[(&str, &str)] = &[
    ("auth-service", "auth-service"),
    ("chat-service", "chat-service"),
    ("mailer", "mailer"),
    ("gateway", "gateway"),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

/// collection → owning service, from the "Who owns which collection" table.
fn owners(architecture: &str) -> BTreeMap<String, String> {
    let section = architecture
        .split("## Who owns which collection")
        .nth(1)
        .expect("docs/architecture.md has a \"Who owns which collection\" section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut owners = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let collection = cells[1].trim_matches('`').to_owned();
        let owner = cells[2].to_owned();
        assert!(
            SERVICES.iter().any(|(name, _)| *name == owner),
            "the owner of `{collection}` must be one service, found {owner:?}"
        );
        assert!(
            owners.insert(collection.clone(), owner).is_none(),
            "`{collection}` is listed twice"
        );
    }
    owners
}

/// The collection names a source file passes to `collection(...)`, directly
/// as a string or through a `const` of the same file.
fn collections_named(source: &str) -> BTreeSet<String> {
    let constants: BTreeMap<&str, &str> = source
        .lines()
        .filter_map(|line| {
            let rest = line
                .trim()
                .trim_start_matches("pub ")
                .strip_prefix("const ")?;
            let (name, value) = rest.split_once(": &str = \"")?;
            Some((name.trim(), value.split('"').next()?))
        })
        .collect();
    let mut named = BTreeSet::new();
    for call in source.split("collection").skip(1) {
        let call = call.trim_start();
        let call = match call.strip_prefix("::<") {
            Some(rest) => rest.split_once('>').map_or("", |(_, after)| after),
            None => call,
        };
        let Some(argument) = call.strip_prefix('(') else {
            continue;
        };
        let argument = argument.split(')').next().unwrap_or("").trim();
        if let Some(literal) = argument.strip_prefix('"') {
            named.insert(literal.trim_end_matches('"').to_owned());
        } else if let Some(value) = constants.get(argument) {
            named.insert((*value).to_owned());
        } else if !argument.is_empty() {
            panic!("collection({argument}) names a collection this check cannot read");
        }
    }
    named
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// Every (file, collection) a service's code names but does not own.
fn trespasses(
    service: &str,
    files: &[(PathBuf, String)],
    owners: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut found = Vec::new();
    for (path, source) in files {
        for collection in collections_named(source) {
            match owners.get(&collection) {
                Some(owner) if owner == service => {}
                Some(owner) => found.push(format!(
                    "{} names `{collection}`, owned by {owner}",
                    path.display()
                )),
                None => found.push(format!(
                    "{} names `{collection}`, which docs/architecture.md gives no owner",
                    path.display()
                )),
            }
        }
    }
    found
}

#[test]
fn no_service_names_a_collection_it_does_not_own() {
    let root = workspace();
    let architecture = std::fs::read_to_string(root.join("docs/architecture.md"))
        .expect("docs/architecture.md exists");
    let owners = owners(&architecture);
    let mut used = BTreeSet::new();
    let mut problems = Vec::new();
    for (service, dir) in SERVICES {
        let mut paths = Vec::new();
        rust_files(&root.join(dir).join("src"), &mut paths);
        let files: Vec<(PathBuf, String)> = paths
            .into_iter()
            .map(|p| {
                let source = std::fs::read_to_string(&p).expect("a readable source file");
                (p, source)
            })
            .collect();
        for (_, source) in &files {
            used.extend(collections_named(source));
        }
        problems.extend(trespasses(service, &files, &owners));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    for collection in owners.keys() {
        assert!(
            used.contains(collection),
            "docs/architecture.md lists `{collection}`, which no service uses"
        );
    }
}

#[test]
fn the_check_sees_a_foreign_collection_however_it_is_named() {
    let owners = owners(
        "## Who owns which collection\n\n| collection | owner | what |\n|---|---|---|\n\
         | `users` | auth-service | accounts |\n| `people` | chat-service | profiles |\n",
    );
    let direct = "let users: Collection<User> = db.collection(\"users\");";
    let typed = "let users = db.collection::<Document>(\"users\");";
    let by_const = "const USERS: &str = \"users\";\nfn f() { db.collection(USERS); }";
    for source in [direct, typed, by_const] {
        let files = vec![(
            PathBuf::from("chat-service/src/store.rs"),
            source.to_owned(),
        )];
        assert_eq!(
            trespasses("chat-service", &files, &owners),
            vec!["chat-service/src/store.rs names `users`, owned by auth-service".to_owned()],
            "in {source:?}"
        );
    }
    let own = vec![(
        PathBuf::from("chat-service/src/store.rs"),
        "db.collection(\"people\")".to_owned(),
    )];
    assert!(trespasses("chat-service", &own, &owners).is_empty());
}
