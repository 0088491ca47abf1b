// What `--version` prints: common/build/version.rs.
include!("../common/build/version.rs");
