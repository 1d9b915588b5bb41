//! `rmq-wasm plugin new --lang L NAME`: writes a listener project from the embedded template.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::lang::{Lang, Language};

#[derive(Debug, clap::Args)]
pub(crate) struct NewArgs {
    /// The listener's language.
    #[arg(long, value_enum)]
    lang: Lang,
    /// Where the project directory is created.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// The project's name: its directory, its package and its `NAME.wasm`.
    name: String,
}

pub(crate) fn new(args: &NewArgs) -> anyhow::Result<()> {
    check_name(&args.name)?;
    let language = args.lang.row();
    let root = args.dir.join(&args.name);
    if root.exists() {
        anyhow::bail!("{} already exists: choose another name or --dir", root.display());
    }
    write_project(language, &args.name, &root)?;
    println!(
        "created {} ({} listener): {} files",
        root.display(),
        language.title,
        language.files.len()
    );
    println!("  cd {}", root.display());
    println!("  {:<22} # native unit tests", language.test);
    println!(
        "  {:<22} # → {}.wasm, validated against the world",
        "rmq-wasm plugin build", args.name
    );
    Ok(())
}

/// A name that is a valid Cargo package, npm package and file name in every language.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 64;
    anyhow::ensure!(
        ok,
        "invalid project name {name:?}: use lowercase letters, digits, '-' and '_', starting with a \
         letter (at most 64 characters)"
    );
    Ok(())
}

/// Writes every file of `language`'s template under `root`, `{{…}}` placeholders filled in.
pub(crate) fn write_project(language: &Language, name: &str, root: &Path) -> anyhow::Result<()> {
    for (path, contents) in language.files {
        let target = root.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&target, fill(contents, name, language))
            .with_context(|| format!("writing {}", target.display()))?;
    }
    Ok(())
}

fn fill(contents: &str, name: &str, l: &Language) -> String {
    [
        ("{{name}}", name),
        ("{{language}}", l.title),
        ("{{toolchain}}", l.toolchain),
        ("{{sdk}}", l.sdk),
        ("{{source}}", l.source),
        ("{{test}}", l.test),
    ]
    .iter()
    .fold(contents.to_owned(), |text, (key, value)| text.replace(key, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::plugin::lang::LANGUAGES;

    #[test]
    fn names_are_checked() {
        for good in ["a", "my-listener", "router_2"] {
            check_name(good).unwrap();
        }
        for bad in ["", "My", "1x", "a b", "../x", "x.y", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    /// Every SDK file is in its language's template (a new SDK module is not silently left out of
    /// generated projects), and placeholders are all filled.
    #[test]
    fn templates_carry_the_whole_sdk_and_fill_every_placeholder() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let sdk_files = |dir: &str, ext: &str| -> Vec<String> {
            let mut out = Vec::new();
            let mut stack = vec![repo.join(dir)];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).unwrap() {
                    let p = e.unwrap().path();
                    if p.is_dir() && !p.ends_with("test") && !p.ends_with("__pycache__") {
                        stack.push(p);
                    } else if p.extension().is_some_and(|x| x == ext)
                        && !p.to_string_lossy().ends_with("_test.go")
                    {
                        out.push(std::fs::read_to_string(p).unwrap());
                    }
                }
            }
            out
        };
        for (lang, dir, ext) in [
            (Lang::Rust, "guest-sdk/rust/src", "rs"),
            (Lang::Python, "guest-sdk/python/rmq_wasm", "py"),
            (Lang::Js, "guest-sdk/js", "js"),
            (Lang::Go, "guest-sdk/go", "go"),
        ] {
            let row = lang.row();
            for file in sdk_files(dir, ext) {
                assert!(
                    row.files.iter().any(|(_, c)| *c == file),
                    "{lang:?}: an SDK file of {dir} is not in the template"
                );
            }
        }
        let dir = tempfile::tempdir().unwrap();
        for l in LANGUAGES {
            let root = dir.path().join(format!("{:?}", l.lang).to_lowercase());
            write_project(l, "my-listener", &root).unwrap();
            for (path, _) in l.files {
                let text = std::fs::read_to_string(root.join(path)).unwrap();
                assert!(!text.contains("{{name}}") && !text.contains("{{toolchain}}"), "{path}");
            }
            assert!(root.join(l.marker).is_file(), "{:?}", l.lang);
        }
    }
}
