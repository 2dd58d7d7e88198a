//! Whether this machine is a cloud instance, told from local files only.
//!
//! With no credentials configured anywhere, asking the instance-metadata service is the
//! last resort, but off the cloud nothing answers it and each try waits out a connect
//! timeout: a public bucket would take seconds to its first byte. The firmware tells where
//! we run without a request (the check google-auth makes before it pings the GCE metadata
//! server): EC2 instances report "Amazon EC2" as the DMI system vendor (or an `ec2` Xen
//! UUID on older types), Compute Engine reports "Google" as the product name. Variables
//! the clouds set in their serverless runtimes count too, and so does a metadata endpoint
//! set by hand.

use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(path))
        .map(|t| t.trim().to_string())
        .unwrap_or_default()
}

fn set(var: &str) -> bool {
    std::env::var_os(var).is_some_and(|v| !v.is_empty())
}

/// Whether this looks like an EC2 instance (or an AWS runtime that has a metadata service).
pub fn on_aws() -> bool {
    read("/sys/class/dmi/id/sys_vendor").contains("Amazon EC2")
        || read("/sys/class/dmi/id/board_asset_tag").starts_with("i-")
        || read("/sys/hypervisor/uuid")
            .to_ascii_lowercase()
            .starts_with("ec2")
        || set("AWS_EXECUTION_ENV")
}

/// Whether this looks like a Compute Engine VM (GKE nodes included) or a Google runtime
/// with a metadata server (Cloud Run, Cloud Functions), or one was named by hand.
pub fn on_gcp() -> bool {
    read("/sys/class/dmi/id/product_name").contains("Google")
        || read("/sys/class/dmi/id/bios_vendor").contains("Google")
        || set("GCE_METADATA_HOST")
        || set("GCE_METADATA_IP")
        || set("K_SERVICE")
        || set("FUNCTION_TARGET")
        || set("CLOUD_RUN_JOB")
}
