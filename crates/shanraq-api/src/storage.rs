//! Persistent storage shared by the stateful components.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// The pattern of a storage quantity the CRD accepts (binary or decimal SI suffixes).
pub const STORAGE_QUANTITY_PATTERN: &str = r"^[1-9][0-9]{0,8}(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.size == oldSelf.size").field_path(".size").message(
    "storage.size is immutable: StatefulSet volume claim templates cannot change (volume expansion is not supported yet)"
))]
#[x_kube(validation = Rule::new(
    "has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)"
).field_path(".storageClassName").message("storage.storageClassName is immutable"))]
pub struct StorageSpec {
    /// Size of each instance's PersistentVolumeClaim, e.g. `50Gi`. Immutable after creation.
    #[schemars(
        regex(pattern = r"^[1-9][0-9]{0,8}(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$"),
        length(max = 16)
    )]
    pub size: String,
    /// StorageClass of the claims; the cluster default when absent. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub storage_class_name: Option<String>,
}

impl StorageSpec {
    pub fn of_size(size: &str) -> Self {
        StorageSpec {
            size: size.to_owned(),
            storage_class_name: None,
        }
    }

    /// The size in bytes.
    pub fn size_bytes(&self) -> Option<u128> {
        quantity_bytes(&self.size)
    }
}

/// Bytes of a Kubernetes quantity restricted to [`STORAGE_QUANTITY_PATTERN`].
pub fn quantity_bytes(text: &str) -> Option<u128> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let value: u128 = digits.parse().ok()?;
    let multiplier: u128 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        _ => return None,
    };
    value.checked_mul(multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_convert_to_bytes() {
        assert_eq!(quantity_bytes("50Gi"), Some(50 << 30));
        assert_eq!(quantity_bytes("1G"), Some(1_000_000_000));
        assert_eq!(quantity_bytes("512"), Some(512));
        assert_eq!(quantity_bytes("1Xi"), None);
    }
}
