//! `Prepared::save` destroys nothing that is not provably a dataset it wrote, refuses a second
//! writer, and removes what a killed run left beside its output.

use std::path::{Path, PathBuf};

use instructrec_data::{prepare, ImportSource, OutputLock, PrepareOptions, Prepared};

fn small_dataset() -> Prepared {
    let source = ImportSource::Dir {
        dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/amazon2018"),
        format: None,
    };
    let options = PrepareOptions {
        k_core: 1,
        candidate_sizes: vec![3],
        ..PrepareOptions::default()
    };
    prepare(&source, &options).unwrap().0
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn write(path: PathBuf, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_folder_with_a_file_called_manifest_json_is_not_replaced() {
    let root = tempfile::tempdir().unwrap();
    let web = root.path().join("web");
    write(
        web.join("manifest.json"),
        r#"{"name": "my app", "icons": []}"#,
    );
    write(web.join("index.html"), "<html></html>");
    let e = small_dataset().save(&web).unwrap_err().to_string();
    assert!(e.contains("refusing to replace it"), "{e}");
    assert!(e.contains("not a prepared dataset's manifest"), "{e}");
    assert_eq!(entries(&web), ["index.html", "manifest.json"]);
    assert_eq!(entries(root.path()), ["web"]);
}

#[test]
fn a_prepared_dataset_someone_changed_or_added_to_is_not_replaced() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("prepared");
    let p = small_dataset();
    p.save(&out).unwrap();

    write(out.join("notes.md"), "my notes");
    let e = p.save(&out).unwrap_err().to_string();
    assert!(
        e.contains("it holds notes.md, which preparation did not write"),
        "{e}"
    );
    std::fs::remove_file(out.join("notes.md")).unwrap();

    write(out.join("candidates/test-3.jsonl"), "edited\n");
    let e = p.save(&out).unwrap_err().to_string();
    assert!(
        e.contains("candidates/test-3.jsonl changed after preparation"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("candidates/test-3.jsonl")).unwrap(),
        "edited\n"
    );
}

#[test]
fn an_unchanged_dataset_is_replaced_and_leftovers_of_killed_runs_are_removed() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("prepared");
    let p = small_dataset();
    p.save(&out).unwrap();
    // What a run killed while staging, or between its renames, leaves.
    write(
        root.path().join(".prepared.tmp-Ab12Cd/items.jsonl"),
        "partial",
    );
    write(root.path().join(".prepared.old-Xy34Zw/items.jsonl"), "old");
    write(root.path().join(".prepared-notes.tmp-1"), "not ours");
    p.save(&out).unwrap();
    assert_eq!(entries(root.path()), [".prepared-notes.tmp-1", "prepared"]);
    assert_eq!(Prepared::load(&out).unwrap(), p);
}

#[test]
fn a_second_writer_gets_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("prepared");
    let held = OutputLock::acquire(&out).unwrap();
    let e = small_dataset().save(&out).unwrap_err().to_string();
    assert!(e.contains("another instructrec run is writing it"), "{e}");
    assert!(!out.exists());
    drop(held);
    small_dataset().save(&out).unwrap();
}
