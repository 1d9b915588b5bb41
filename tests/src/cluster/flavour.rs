//! Which RocketMQ implementation a local cluster runs, and how its servers are launched.
//!
//! * `java5` (the default): Apache RocketMQ's own name server and broker, 5.3.x, as JVM
//!   processes. The jars come from Maven Central through `tests/java/pom.xml`
//!   (`scripts/install-java-cluster.sh` copies them into `target/rocketmq-java/<version>/lib`).
//! * `java4`: the same at 4.9.x (the line most production clusters still run).
//! * `rust`: rocketmq-rust 1.0.0 (`scripts/install-cluster.sh`), an independent second
//!   implementation with its own deviations (see the README).
//!
//! Chosen by `RMQ_CLUSTER_FLAVOUR` (honoured by the tests, `scripts/cluster.sh`, the benchmark and
//! the demo).

use std::fmt;
use std::path::Path;
use std::path::PathBuf;
use std::process::Command;
use std::str::FromStr;

use anyhow::Result;
use anyhow::anyhow;
use anyhow::bail;

/// Environment variable naming the flavour (`java5`, `java4`, `rust`).
pub const FLAVOUR_ENV: &str = "RMQ_CLUSTER_FLAVOUR";
/// Overrides the directory the Java jars are looked up in (default
/// `<workspace>/target/rocketmq-java/<version>/lib`).
pub const JAVA_LIB_ENV: &str = "RMQ_JAVA_LIB_DIR";

/// The Apache RocketMQ 5.x version the `java5` flavour runs. 5.3.4 is not complete on the Maven
/// repository these machines reach (`rocketmq-client`, `-remoting`, `-srvutil` … 5.3.4: "Could not
/// find artifact"), so the newest 5.3 release that resolves in full.
pub const JAVA5_VERSION: &str = "5.3.3";
/// The Apache RocketMQ 4.9.x version the `java4` flavour runs (4.9.8's name server and broker are
/// not served there; 4.9.7 is the newest complete 4.9 release).
pub const JAVA4_VERSION: &str = "4.9.7";

/// File name of the rocketmq-rust name server binary (`scripts/install-cluster.sh`).
pub const NAMESRV_BIN: &str = "rocketmq-namesrv-rust";
/// File name of the rocketmq-rust broker binary (`scripts/install-cluster.sh`).
pub const BROKER_BIN: &str = "rocketmq-broker-rust";
/// Main class of the Java name server.
pub const JAVA_NAMESRV_MAIN: &str = "org.apache.rocketmq.namesrv.NamesrvStartup";
/// Main class of the Java broker.
pub const JAVA_BROKER_MAIN: &str = "org.apache.rocketmq.broker.BrokerStartup";

/// What identifies a server process of ours in `/proc/<pid>/cmdline` (guards against pid reuse).
pub(crate) const SERVER_MARKERS: &[&str] =
    &[NAMESRV_BIN, BROKER_BIN, JAVA_NAMESRV_MAIN, JAVA_BROKER_MAIN];

/// JVM options of every Java server: the heap is set per role, the module flags per version.
///
/// * `-XX:+ExitOnOutOfMemoryError`: a broker out of heap must die visibly, not limp on.
/// * `-Djava.net.preferIPv4Stack=true`: every listener is 127.0.0.1.
///
/// Apache RocketMQ's own `runbroker.sh`/`runserver.sh` pass no module flags on JDK 9+ (only GC
/// logging options).
const JVM_OPTIONS: &[&str] = &[
    "-XX:+UseG1GC",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.net.preferIPv4Stack=true",
    "-Dfile.encoding=UTF-8",
];

/// JDK 17 module flags 4.9 needs: its store unmaps memory-mapped files by reflection
/// (`MappedFile.clean` → `DirectByteBuffer.attachment()`, `jdk.internal.ref.Cleaner.clean()`),
/// which JDK 17 refuses without both ("module java.base does not opens java.nio", then "does not
/// exports jdk.internal.ref"). It runs when files are destroyed (expiry, truncation in crash
/// recovery) and from `StoreCheckpoint.shutdown` on every normal stop. 5.3 frees mapped buffers
/// through Netty's `PlatformDependent.freeDirectBuffer` and needs none; `sun.nio.ch` is exported
/// for the paths that cast to `sun.nio.ch.DirectBuffer` (read-ahead off, warm-up, transient store
/// pool: all off by default).
const JVM_MODULE_FLAGS_4: &[&str] = &[
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-exports=java.base/jdk.internal.ref=ALL-UNNAMED",
];
const JVM_MODULE_FLAGS_5: &[&str] = &["--add-exports=java.base/sun.nio.ch=ALL-UNNAMED"];

/// Heap of a Java name server.
const NAMESRV_HEAP: &str = "256m";
/// Heap of a Java broker (the bound: ≤ 512 MiB).
const BROKER_HEAP: &str = "512m";

/// A RocketMQ implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavour {
    /// Apache RocketMQ 5.3 (Java).
    Java5,
    /// Apache RocketMQ 4.9 (Java).
    Java4,
    /// rocketmq-rust 1.0.0.
    Rust,
}

impl Flavour {
    /// Every flavour.
    pub const ALL: [Flavour; 3] = [Flavour::Java5, Flavour::Java4, Flavour::Rust];

    /// The flavour named by `RMQ_CLUSTER_FLAVOUR`, `java5` when unset or empty.
    pub fn from_env() -> Result<Flavour> {
        match std::env::var(FLAVOUR_ENV) {
            Ok(value) if !value.trim().is_empty() => value.parse(),
            _ => Ok(Flavour::Java5),
        }
    }

    /// The flavour's name as `RMQ_CLUSTER_FLAVOUR` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Flavour::Java5 => "java5",
            Flavour::Java4 => "java4",
            Flavour::Rust => "rust",
        }
    }

    /// True for Apache RocketMQ's own servers.
    pub fn is_java(self) -> bool {
        matches!(self, Flavour::Java5 | Flavour::Java4)
    }

    /// The server version this flavour runs.
    pub fn version(self) -> &'static str {
        match self {
            Flavour::Java5 => JAVA5_VERSION,
            Flavour::Java4 => JAVA4_VERSION,
            Flavour::Rust => "1.0.0",
        }
    }

    /// Whether the broker binds its remoting listeners to a configured address. Java 4.9's
    /// `NettyServerConfig` has no `bindAddress`: its listeners bind every interface (the
    /// advertised address, `brokerIP1`, is still 127.0.0.1, so clients only use loopback).
    pub fn binds_loopback_only(self) -> bool {
        !matches!(self, Flavour::Java4)
    }

    /// Errors naming the install step when this flavour's servers are not installed.
    pub fn check_installed(self) -> Result<()> {
        match self {
            Flavour::Rust => {
                find_binary(NAMESRV_BIN)?;
                find_binary(BROKER_BIN)?;
            }
            Flavour::Java5 | Flavour::Java4 => {
                java_lib_dir(self.version())?;
                java_binary()?;
            }
        }
        Ok(())
    }

    /// The command that starts a name server reading `conf`.
    pub(crate) fn namesrv_command(self, conf: &Path, home: &Path, port: u16) -> Result<Command> {
        Ok(match self {
            Flavour::Rust => {
                let mut command = Command::new(find_binary(NAMESRV_BIN)?);
                command.arg("-c").arg(conf).args([
                    "--listenPort",
                    &port.to_string(),
                    "--bindAddress",
                    "127.0.0.1",
                ]);
                command
            }
            Flavour::Java5 | Flavour::Java4 => {
                let mut command = self.java(home, NAMESRV_HEAP)?;
                command.arg(JAVA_NAMESRV_MAIN).arg("-c").arg(conf);
                command
            }
        })
    }

    /// The command that starts a broker reading `conf`.
    pub(crate) fn broker_command(self, conf: &Path, home: &Path, namesrv: &str) -> Result<Command> {
        Ok(match self {
            Flavour::Rust => {
                let mut command = Command::new(find_binary(BROKER_BIN)?);
                command.arg("-c").arg(conf).args(["-n", namesrv]);
                command
            }
            Flavour::Java5 | Flavour::Java4 => {
                let mut command = self.java(home, BROKER_HEAP)?;
                command.arg(JAVA_BROKER_MAIN).arg("-c").arg(conf);
                command
            }
        })
    }

    /// `java <options> -cp <lib>/*` with logs under `home` (`user.home` is where both servers put
    /// `logs/rocketmqlogs/` and the name server its kv config).
    fn java(self, home: &Path, heap: &str) -> Result<Command> {
        let lib = java_lib_dir(self.version())?;
        let mut command = Command::new(java_binary()?);
        command
            .arg(format!("-Xms{heap}"))
            .arg(format!("-Xmx{heap}"))
            .args(JVM_OPTIONS)
            .args(if self == Flavour::Java4 { JVM_MODULE_FLAGS_4 } else { JVM_MODULE_FLAGS_5 })
            .arg(format!("-Duser.home={}", home.display()))
            .arg(format!("-Drocketmq.home.dir={}", home.display()))
            .arg("-cp")
            .arg(format!("{}/*", lib.display()));
        Ok(command)
    }
}

impl FromStr for Flavour {
    type Err = anyhow::Error;

    fn from_str(value: &str) -> Result<Flavour> {
        match value.trim() {
            "java5" | "java" => Ok(Flavour::Java5),
            "java4" => Ok(Flavour::Java4),
            "rust" => Ok(Flavour::Rust),
            other => bail!("unknown {FLAVOUR_ENV} `{other}`: expected java5, java4 or rust"),
        }
    }
}

impl fmt::Display for Flavour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.version())
    }
}

/// The workspace root (this crate's parent directory).
pub fn workspace_root() -> PathBuf {
    let tests_crate = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests_crate.parent().unwrap_or(tests_crate).to_path_buf()
}

/// The directory holding Apache RocketMQ `version`'s jars and their dependencies.
pub fn java_lib_dir(version: &str) -> Result<PathBuf> {
    let dir = match std::env::var_os(JAVA_LIB_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join("target").join("rocketmq-java").join(version).join("lib"),
    };
    let broker_jar = dir.join(format!("rocketmq-broker-{version}.jar"));
    if !broker_jar.is_file() {
        bail!(
            "{} is missing: install Apache RocketMQ {version}'s jars with \
             scripts/install-java-cluster.sh",
            broker_jar.display()
        );
    }
    Ok(dir)
}

/// `$JAVA_HOME/bin/java`, else `java` on `PATH`.
pub fn java_binary() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("JAVA_HOME") {
        let java = PathBuf::from(home).join("bin").join("java");
        if java.is_file() {
            return Ok(java);
        }
    }
    find_on_path("java").ok_or_else(|| anyhow!("`java` was not found (OpenJDK 17 is needed)"))
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|path| path.is_file())
}

/// Finds `name` on `PATH`, then in `$CARGO_HOME/bin` (default `~/.cargo/bin`).
pub fn find_binary(name: &str) -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = find_on_path(name).into_iter().collect();
    if let Some(cargo_home) = std::env::var_os("CARGO_HOME") {
        candidates.push(PathBuf::from(cargo_home).join("bin").join(name));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cargo").join("bin").join(name));
    }
    candidates.into_iter().find(|path| path.is_file()).ok_or_else(|| {
        anyhow!(
            "`{name}` was not found on PATH or in ~/.cargo/bin; install rocketmq-rust 1.0.0 with \
             scripts/install-cluster.sh"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavour_names_round_trip() {
        for flavour in Flavour::ALL {
            assert_eq!(flavour.name().parse::<Flavour>().unwrap(), flavour);
        }
        let error = "java6".parse::<Flavour>().unwrap_err().to_string();
        assert!(error.contains("java6") && error.contains(FLAVOUR_ENV), "{error}");
    }
}
