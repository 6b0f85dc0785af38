//! Which files a corpus glob takes: folders, ignore files, hidden files.

use kolm::recall::corpus::files as corpus_files;

#[test]
fn corpus_globs_follow_ripgrep_rules() {
    let d = tempfile::tempdir().unwrap();
    let w = |rel: &str| {
        let p = d.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, rel).unwrap();
    };
    for f in [
        "docs/a.md",
        "docs/b.txt",
        "docs/sub/c.md",
        "docs/.hidden.md",
        "docs/draft/d.md",
        "docs/secret/e.md",
        "other/f.md",
    ] {
        w(f);
    }
    std::fs::write(d.path().join("docs/.gitignore"), "draft/\n").unwrap();
    std::fs::write(d.path().join("docs/.kolmignore"), "secret/\n").unwrap();
    let list = |globs: &[&str]| {
        corpus_files(
            d.path(),
            &globs.iter().map(|g| g.to_string()).collect::<Vec<_>>(),
        )
        .unwrap()
    };
    assert_eq!(list(&["docs/*.md"]), ["docs/a.md"]);
    assert_eq!(list(&["docs/**/*.md"]), ["docs/a.md", "docs/sub/c.md"]);
    assert_eq!(
        list(&["docs/**/*.md", "docs/*.md", "other/f.md"]),
        ["docs/a.md", "docs/sub/c.md", "other/f.md"],
        "sorted, no duplicates, a plain path works"
    );
    assert!(list(&["missing/**"]).is_empty());
}
