//! The `check` and `mount` commands, as a user runs them. `mount` talks to a
//! real moto server; the tmpfs case needs root.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_aws-secrets-csi"));
    c.env_remove("AWS_REGION").env_remove("RUST_LOG");
    c
}

/// `mount` with a role and token against moto.
fn mount_cmd(file: &Path, target: &Path, role: &str, token: &Path, extra: &[&str]) -> Command {
    let mut c = bin();
    c.arg("mount")
        .args(extra)
        .arg("-f")
        .arg(file)
        .arg("--target")
        .arg(target)
        .args(["--role-arn", role, "--token-file"])
        .arg(token)
        .env("AWS_ENDPOINT_URL", &moto().endpoint)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_ACCESS_KEY_ID");
    c
}

fn class_file(dir: &Path, objects: &str, extra: &str) -> std::path::PathBuf {
    let indented: String = objects.lines().map(|l| format!("      {l}\n")).collect();
    let text = format!(
        "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {{name: demo, namespace: shop}}\nspec:\n  provider: aws\n  parameters:\n    region: us-east-1\n{extra}    objects: |\n{indented}"
    );
    let path = dir.join("class.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_lists_files_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let file = class_file(
        dir.path(),
        "- {objectName: prod/db, objectType: secretsmanager, jmesPath: [{path: u, objectAlias: user, filePermission: \"0400\"}]}",
        "",
    );
    let out = bin().args(["check", "-f"]).arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "0644  prod_db  (from prod/db)\n0400  user  (from prod/db)\n"
    );

    let out = bin()
        .args(["check", "--json", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!([
            {"path": "prod_db", "mode": "0644", "source": "prod/db"},
            {"path": "user", "mode": "0400", "source": "prod/db"}
        ])
    );
}

#[test]
fn check_refuses_a_bad_class_with_the_driver_message() {
    let dir = tempfile::tempdir().unwrap();
    let file = class_file(
        dir.path(),
        "- {objectName: a, objectType: secretsmanager, filePermission: \"777\"}",
        "",
    );
    let out = bin().args(["check", "-f"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: SecretProviderClass shop/demo: objects[0] (a): Invalid File Permission: 777"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn check_warns_about_unknown_keys_but_accepts_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = class_file(
        dir.path(),
        "- {objectName: a, objectType: secretsmanager, objectAlais: b}",
        "",
    );
    let out = bin().args(["check", "-f"]).arg(&file).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(
        "objects[0] (a): unknown key `objectAlais`, ignored; did you mean `objectAlias`?"
    ));
}

#[test]
fn check_without_a_class_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pod.yaml");
    std::fs::write(&file, "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n").unwrap();
    let out = bin().args(["check", "-f"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no SecretProviderClass"));
}

#[tokio::test(flavor = "multi_thread")]
async fn mount_with_a_role_and_token_file_writes_the_files() {
    let moto = moto();
    moto.create_secret("cli/db", r#"{"password":"cli-pw-4471"}"#)
        .await;
    moto.put_parameter("/cli/param", "cli-param-value").await;
    let dir = tempfile::tempdir().unwrap();
    let file = class_file(
        dir.path(),
        "- {objectName: cli/db, objectType: secretsmanager, jmesPath: [{path: password, objectAlias: pw}]}\n- {objectName: /cli/param, objectType: ssmparameter, objectAlias: param}",
        "",
    );
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJ-cli-token\n").unwrap();
    let target = dir.path().join("out");
    let out = mount_cmd(&file, &target, READER_ROLE, &token, &["--no-tmpfs"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(target.join("pw")).unwrap(),
        "cli-pw-4471"
    );
    assert_eq!(
        std::fs::read_to_string(target.join("param")).unwrap(),
        "cli-param-value"
    );
    assert!(!stderr.contains("cli-pw-4471") && !stderr.contains("eyJ-cli-token"));

    // The nobody role: refused, clear message, nothing written.
    let denied = dir.path().join("denied");
    let out = mount_cmd(&file, &denied, NOBODY_ROLE, &token, &["--no-tmpfs"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cli/db in us-east-1: AccessDenied"),
        "{stderr}"
    );
    assert!(!denied.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn mount_on_tmpfs_twice_swaps_in_place() {
    require_root();
    let moto = moto();
    moto.create_secret("cli/tmpfs", "tmpfs-v1").await;
    let dir = TestDir::new();
    let file = class_file(
        dir.path(),
        "- {objectName: cli/tmpfs, objectType: secretsmanager, objectAlias: s}",
        "",
    );
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJ-cli-token").unwrap();
    let target = dir.path().join("mnt");
    let run = || {
        mount_cmd(&file, &target, READER_ROLE, &token, &[])
            .output()
            .unwrap()
    };
    assert!(run().status.success());
    assert_eq!(
        std::fs::read_to_string(target.join("s")).unwrap(),
        "tmpfs-v1"
    );
    moto.secrets_manager()
        .put_secret_value()
        .secret_id("cli/tmpfs")
        .secret_string("tmpfs-v2")
        .send()
        .await
        .unwrap();
    assert!(run().status.success());
    assert_eq!(
        std::fs::read_to_string(target.join("s")).unwrap(),
        "tmpfs-v2"
    );
    assert_eq!(mounts_under(&target).len(), 1, "one tmpfs, not two");
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_stops_cleanly_on_sigterm() {
    require_root();
    let dir = TestDir::new();
    let kube = common::kube::FakeKube::start(dir.path()).await;
    let mut driver = Driver::start(dir.path(), &kube.kubeconfig, &[]).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(driver.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = driver.wait_exit(std::time::Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", driver.logs());
    assert!(!driver.socket.exists(), "the socket is removed on shutdown");
    assert!(driver.logs().contains("SIGTERM"));
}

#[tokio::test(flavor = "multi_thread")]
async fn mount_watch_follows_a_rotation_until_sigterm() {
    let moto = moto();
    moto.create_secret("cli/watch", "watch-v1").await;
    let dir = tempfile::tempdir().unwrap();
    let file = class_file(
        dir.path(),
        "- {objectName: cli/watch, objectType: secretsmanager, objectAlias: s}",
        "",
    );
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJ-cli-token").unwrap();
    let target = dir.path().join("out");
    let child = mount_cmd(
        &file,
        &target,
        READER_ROLE,
        &token,
        &["--no-tmpfs", "--watch", "--refresh-interval", "300ms"],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let read = || std::fs::read_to_string(target.join("s")).ok();
    let wait_for = |want: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while read().as_deref() != Some(want) {
            assert!(
                std::time::Instant::now() < deadline,
                "the file never became {want:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    wait_for("watch-v1");
    moto.secrets_manager()
        .put_secret_value()
        .secret_id("cli/watch")
        .secret_string("watch-v2")
        .send()
        .await
        .unwrap();
    wait_for("watch-v2");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("refreshed: content changed, files swapped"),
        "{stdout}"
    );
    assert!(stdout.contains("stopped; the files stay in"), "{stdout}");
    assert_eq!(
        read().as_deref(),
        Some("watch-v2"),
        "files stay after the watch ends"
    );
}

/// `check` of a class whose `objects` are `objects`: its exit code and stderr.
fn check_objects(objects: &str, extra: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = class_file(dir.path(), objects, extra);
    let out = bin().args(["check", "-f"]).arg(&file).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_refuses_setuid_setgid_and_sticky_modes() {
    for mode in ["4755", "6777", "1777"] {
        let (code, stderr) = check_objects(
            &format!("- {{objectName: a, objectType: secretsmanager, filePermission: \"{mode}\"}}"),
            "",
        );
        assert_eq!(code, Some(1), "{mode}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "Invalid File Permission: {mode}: setuid, setgid and sticky bits are not allowed"
            )),
            "{stderr}"
        );
    }
}

#[test]
fn check_refuses_absolute_and_climbing_aliases_as_written() {
    let (code, stderr) = check_objects(
        "- {objectName: a, objectType: secretsmanager, objectAlias: /etc/passwd}",
        "",
    );
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(
            "invalid file name \"/etc/passwd\" for object a: the file name is an absolute path"
        ),
        "{stderr}"
    );
    let (code, stderr) = check_objects(
        "- {objectName: a, objectType: secretsmanager, objectAlias: ../../etc/x}",
        "",
    );
    assert_eq!(code, Some(1));
    assert!(stderr.contains("\"../../etc/x\""), "{stderr}");
    assert!(!stderr.contains(".._.._etc_x"), "{stderr}");
}

#[test]
fn check_reports_a_broken_objects_yaml_before_a_missing_region() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("class.yaml");
    std::fs::write(
        &path,
        "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {name: demo, namespace: shop}\nspec:\n  provider: aws\n  parameters:\n    objects: |\n      - {objectName: a, objectType\n",
    )
    .unwrap();
    let out = bin().args(["check", "-f"]).arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("Failed to load SecretProviderClass"),
        "{stderr}"
    );
    assert!(!stderr.contains("Region not found"), "{stderr}");
}

#[test]
fn the_driver_refuses_to_run_where_the_sdk_would_log_request_bodies() {
    let out = bin()
        .args(["check", "-f", "/nonexistent"])
        .env("LOG_SIGNABLE_BODY", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("LOG_SIGNABLE_BODY is set"), "{stderr}");
}

#[test]
fn check_names_typos_even_when_the_class_fails() {
    let (code, stderr) = check_objects(
        "- {objectName: db, objectTyp: secretsmanager}",
        "    pathTranslaton: \"-\"\n",
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("warning: parameters: unknown parameter `pathTranslaton`, ignored; did you mean `pathTranslation`?"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "warning: objects[0] (db): unknown key `objectTyp`, ignored; did you mean `objectType`?"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("Must use objectType when a full ARN is not specified: db"),
        "{stderr}"
    );
}

#[test]
fn check_reports_yaml_errors_at_their_place_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // objects' third line, column 15: the quote that never closes.
    let file = class_file(
        dir.path(),
        "- objectName: a\n  objectType: secretsmanager\n- objectName: \"b\n",
        "",
    );
    let out = bin().args(["check", "-f"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text = std::fs::read_to_string(&file).unwrap();
    let line = text.lines().position(|l| l.contains("\"b")).unwrap() + 1;
    let column = text.lines().nth(line - 1).unwrap().find('"').unwrap() + 1;
    assert_eq!(
        stderr.trim(),
        format!(
            "error: SecretProviderClass shop/demo: Failed to load SecretProviderClass: {}:{line}:{column}: unclosed quote (inside parameters.objects, at its line 3 column 15)",
            file.display()
        )
    );
    assert_eq!(stderr.matches("error:").count(), 1, "said once: {stderr}");
}

#[test]
fn check_json_into_a_closed_pipe_is_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let objects: String = (0..2000)
        .map(|i| format!("- {{objectName: s{i}, objectType: secretsmanager}}\n"))
        .collect();
    let file = class_file(dir.path(), &objects, "");
    let mut child = bin()
        .args(["check", "--json", "-f"])
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Like `| head -1`: read a little, then close the pipe.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

#[test]
fn mount_without_credentials_says_how_to_give_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = class_file(
        dir.path(),
        "- {objectName: a, objectType: secretsmanager}",
        "",
    );
    let out = bin()
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(["mount", "--no-tmpfs", "-f"])
        .arg(&file)
        .arg("--target")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with("error: no AWS credentials found: give --role-arn with --token-file"),
        "{stderr}"
    );
    assert!(!dir.path().join("out").exists());

    let out = bin()
        .args(["mount", "--no-tmpfs", "--role-arn", "web", "--token-file"])
        .arg(&file)
        .arg("-f")
        .arg(&file)
        .arg("--target")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        "error: --role-arn \"web\" is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"
    );
}

#[test]
fn a_machine_without_the_prerequisites_is_told_what_to_install() {
    // A PATH with an old Rust, an old Go and nothing else of the list.
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = dir.path();
    for tool in ["bash", "awk", "sort", "head", "printf", "id", "env"] {
        let real = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.exists())
            .unwrap();
        std::os::unix::fs::symlink(real, bin_dir.join(tool)).unwrap();
    }
    let stub = |name: &str, out: &str| {
        let path = bin_dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\necho '{out}'\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    };
    stub("rustc", "rustc 1.80.0 (old)");
    stub("cargo", "cargo 1.80.0");
    stub("go", "go1.20");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/prereqs.sh");
    let out = Command::new(bin_dir.join("bash"))
        .arg("-c")
        .arg(format!(
            ". {}; require_prerequisites test",
            script.display()
        ))
        .env_clear()
        .env("PATH", bin_dir)
        .env("PREREQS_NO_INSTALL", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("cannot run the test: missing prerequisites\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Rust >= 1.95 (found 1.80.0): rustup update stable"),
        "{stderr}"
    );
    assert!(stderr.contains("Go >= 1.25 (found 1.20)"), "{stderr}");
    assert!(
        stderr.contains("sudo apt-get install gcc libc6-dev python3 util-linux"),
        "{stderr}"
    );
    assert!(stderr.contains("openssl curl"), "{stderr}");
}

#[test]
fn check_reads_unquoted_scalars_as_the_aws_provider_does_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let file = class_file(
        dir.path(),
        "- {objectName: 12345, objectType: ssmparameter, objectVersion: 1, objectAlias: yes}",
        "",
    );
    let out = bin().args(["check", "-f"]).arg(&file).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The file is "true", as ASCP names it; each unquoted value is named.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "0644  true  (from 12345)\n"
    );
    for field in ["objectName", "objectVersion", "objectAlias"] {
        assert!(
            stderr.contains(&format!("{field}: the unquoted")),
            "{field}: {stderr}"
        );
    }
}

/// Every class in deploy/examples plans, and one with sample values beside
/// it renders every file (an .env, a properties file, JSON and YAML, a PEM
/// bundle and a PKCS#12 keystore) without printing a value unless asked.
#[test]
fn the_examples_check_and_render_offline() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples");
    let mut rendered = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".yaml") || name.ends_with(".values.yaml") {
            continue;
        }
        let out = bin().args(["check", "-f"]).arg(&path).output().unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let values = path.with_extension("values.yaml");
        if !values.exists() {
            continue;
        }
        rendered += 1;
        let out = bin()
            .args(["check", "--json", "-f"])
            .arg(&path)
            .arg("--values")
            .arg(&values)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !stdout.contains("sample-p@ss"),
            "no value without --show-values: {stdout}"
        );
        let files: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
        let paths: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
        if name == "templated-files.yaml" {
            assert_eq!(
                paths,
                [
                    "app.env",
                    "application.properties",
                    "config/app.json",
                    "config/app.yaml",
                    "rotation.json",
                    "tls/bundle.pem",
                    "tls/keystore.p12"
                ]
            );
        }
        assert!(
            files.iter().all(|f| f["bytes"].as_u64().unwrap() > 0),
            "{stdout}"
        );
        let out = bin()
            .args(["check", "--json", "--show-values", "-f"])
            .arg(&path)
            .arg("--values")
            .arg(&values)
            .output()
            .unwrap();
        let files: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        let content = |p: &str| {
            files.iter().find(|f| f["path"] == p).unwrap()["content"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        if name == "templated-files.yaml" {
            assert!(content("app.env").contains("DB_PASSWORD=\"sample-p@ss \\\"word\\\"\"\n"));
            let json: serde_json::Value =
                serde_json::from_str(&content("config/app.json")).unwrap();
            assert_eq!(json["database"]["password"], "sample-p@ss \"word\"");
            let yaml: serde_json::Value =
                serde_saphyr::from_str(&content("config/app.yaml")).unwrap();
            assert_eq!(yaml["database"]["host"], "db.example.internal");
            let pem = content("tls/bundle.pem");
            assert_eq!(
                pem.matches("-----BEGIN CERTIFICATE-----").count(),
                2,
                "{pem}"
            );
            assert_eq!(pem.matches("PRIVATE KEY-----").count(), 2, "{pem}");
        }
    }
    assert!(rendered >= 1, "an example with sample values is rendered");
}

/// The keystore the example renders opens with its password in OpenSSL and
/// holds the key and both certificates.
#[test]
fn the_example_keystore_opens_in_openssl() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples");
    let dir = tempfile::tempdir().unwrap();
    // Only the keystore template, through a class of its own that writes it
    // as a file we can hand to openssl: `mount` renders as the driver does.
    let class = std::fs::read_to_string(examples.join("templated-files.yaml")).unwrap();
    assert!(class.contains("fullPemToPkcs12Pass"));
    let values: std::collections::BTreeMap<String, String> = serde_saphyr::from_str(
        &std::fs::read_to_string(examples.join("templated-files.values.yaml")).unwrap(),
    )
    .unwrap();
    let out = bin()
        .args(["check", "--json", "--show-values", "-f"])
        .arg(examples.join("templated-files.yaml"))
        .arg("--values")
        .arg(examples.join("templated-files.values.yaml"))
        .output()
        .unwrap();
    let files: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let p12 = files
        .iter()
        .find(|f| f["path"] == "tls/keystore.p12")
        .unwrap();
    assert_eq!(p12["mode"], "0440");
    // The listing shows binary content lossily; the size is exact.
    let size = p12["bytes"].as_u64().unwrap();
    assert!(size > 500, "{size}");
    // Build the same keystore through the engine's own function from the
    // sample PEMs and check it in OpenSSL.
    let tls: serde_json::Value = serde_json::from_str(&values["prod/tls"]).unwrap();
    let data = std::collections::BTreeMap::from([
        (
            "cert".to_string(),
            tls["cert"].as_str().unwrap().as_bytes().to_vec(),
        ),
        (
            "chain".to_string(),
            tls["chain"].as_str().unwrap().as_bytes().to_vec(),
        ),
        (
            "key".to_string(),
            tls["key"].as_str().unwrap().as_bytes().to_vec(),
        ),
    ]);
    use aws_secrets_csi_core::template::{Limits, Options, Template, Value};
    let t = Template::parse(
        "p12",
        "{{ fullPemToPkcs12Pass (print .cert .chain) .key \"changeit\" | b64dec }}",
        &Options::default(),
    )
    .unwrap();
    let bytes = t
        .execute(&Value::from_secret_data(&data), &Limits::default())
        .unwrap();
    assert_eq!(
        bytes.len() as u64,
        size,
        "the example renders this keystore"
    );
    let file = dir.path().join("k.p12");
    std::fs::write(&file, &bytes).unwrap();
    let out = Command::new("openssl")
        .args(["pkcs12", "-nodes", "-passin", "pass:changeit", "-in"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.matches("BEGIN CERTIFICATE").count(), 2, "{text}");
    assert!(text.contains("PRIVATE KEY"), "{text}");
    let wrong = Command::new("openssl")
        .args(["pkcs12", "-nodes", "-passin", "pass:wrong", "-in"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!wrong.status.success(), "the password protects it");
}

/// Templates and the rotation manifest through `mount` on a real tmpfs
/// against moto: rendered, swapped with a rotation, and a broken template
/// fails with its line and keeps the files.
#[tokio::test(flavor = "multi_thread")]
async fn mount_renders_templates_and_the_manifest_and_swaps_them_on_rotation() {
    require_root();
    let moto = moto();
    moto.create_secret("cli/tpl-db", r#"{"user":"app","password":"tpl-pw-1"}"#)
        .await;
    moto.put_parameter("/cli/tpl-key", "key-1").await;
    let dir = TestDir::new();
    let templates = "    objectFiles: \"false\"\n    rotationManifest: rotation.json\n    templates: |\n      - path: app.env\n        template: |\n          DB_USER={{ .db_user }}\n          DB_PASSWORD={{ .db_password }}\n          KEY={{ .key }}\n";
    let objects = "- {objectName: cli/tpl-db, objectType: secretsmanager, jmesPath: [{path: user, objectAlias: db_user}, {path: password, objectAlias: db_password}]}\n- {objectName: /cli/tpl-key, objectType: ssmparameter, objectAlias: key}";
    let file = class_file(dir.path(), objects, templates);
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJ-cli-token").unwrap();
    let target = dir.path().join("mnt");
    let run = |file: &Path| {
        mount_cmd(file, &target, READER_ROLE, &token, &[])
            .output()
            .unwrap()
    };
    let out = run(&file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = || std::fs::read_to_string(target.join("app.env")).unwrap();
    assert_eq!(env(), "DB_USER=app\nDB_PASSWORD=tpl-pw-1\nKEY=key-1\n");
    let mut names: Vec<String> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".."))
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["app.env", "rotation.json"],
        "only the templated files"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(target.join("app.env"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o644);
    let manifest = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(target.join("rotation.json")).unwrap())
            .unwrap()
    };
    let first = manifest();
    let db = &first["objects"][0];
    assert_eq!(db["objectName"], "cli/tpl-db");
    assert_eq!(db["versionStages"], serde_json::json!(["AWSCURRENT"]));
    assert!(
        db["created"].is_string() && db["fetched"].is_string(),
        "{first}"
    );
    assert_eq!(first["objects"][1]["versionId"], "1");
    let text = std::fs::read_to_string(target.join("rotation.json")).unwrap();
    assert!(
        !text.contains("tpl-pw-1") && !text.contains("key-1"),
        "{text}"
    );

    // Unchanged in AWS: the manifest keeps its bytes (no swap).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert!(run(&file).status.success());
    assert_eq!(manifest(), first);

    // A rotation: new files and a manifest naming the new version.
    moto.secrets_manager()
        .put_secret_value()
        .secret_id("cli/tpl-db")
        .secret_string(r#"{"user":"app","password":"tpl-pw-2"}"#)
        .send()
        .await
        .unwrap();
    assert!(run(&file).status.success());
    assert_eq!(env(), "DB_USER=app\nDB_PASSWORD=tpl-pw-2\nKEY=key-1\n");
    let second = manifest();
    assert_ne!(
        second["objects"][0]["versionId"],
        first["objects"][0]["versionId"]
    );
    assert_eq!(
        second["objects"][1], first["objects"][1],
        "the parameter's entry stands"
    );

    // A broken template: refused with its place, the files stay.
    let broken = class_file(
        dir.path(),
        objects,
        "    templates: |\n      - path: app.env\n        template: |\n          A={{ .db_user }}\n          B={{ .nope }}\n",
    );
    let out = run(&broken);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("templates[0] (app.env):2"), "{stderr}");
    assert!(!stderr.contains("tpl-pw-2"), "{stderr}");
    assert_eq!(env(), "DB_USER=app\nDB_PASSWORD=tpl-pw-2\nKEY=key-1\n");
    assert_eq!(mounts_under(&target).len(), 1);
}
