//! Hostile `rewrite` input (any pattern, target, keys and values) never
//! panics: it rewrites or fails with an error.

use std::collections::BTreeMap;

use aws_secrets_csi_core::external::rewrite::{
    self, ConflictPolicy, MergeStrategy, Rewrite, RewriteMerge, RewriteRegexp,
};
use aws_secrets_csi_core::secret::SecretBytes;
use proptest::prelude::*;

fn no_transform(_: &str, _: &str) -> Result<String, String> {
    Err("no template engine".to_owned())
}

proptest! {
    #[test]
    fn rewrite_never_panics(
        source in "[\\\\()\\[\\]{}*+?|^$.a-c0-9$P<>:-]{0,24}",
        target in "[$a-c0-9{}_-]{0,12}",
        keys in proptest::collection::btree_map("[a-c/$.-]{0,6}", "[{}\":a-c0-9,\\[\\] ]{0,16}", 0..6),
        json in any::<bool>(),
        into in "[a-c]{0,2}",
    ) {
        let data: BTreeMap<String, SecretBytes> =
            keys.into_iter().map(|(k, v)| (k, SecretBytes::from(v))).collect();
        let ops = [
            Rewrite {
                regexp: Some(RewriteRegexp { source, target }),
                transform: None,
                merge: None,
            },
            Rewrite {
                regexp: None,
                transform: None,
                merge: Some(RewriteMerge {
                    into,
                    strategy: if json { MergeStrategy::Json } else { MergeStrategy::Extract },
                    conflict_policy: ConflictPolicy::Ignore,
                    ..RewriteMerge::default()
                }),
            },
        ];
        let n = data.len();
        match rewrite::rewrite_map(&ops[..1], data.clone(), "spec.dataFrom[0]", &no_transform) {
            Ok(out) => prop_assert_eq!(out.len(), n, "a rename keeps every key or fails"),
            Err(e) => prop_assert!(e.to_string().starts_with("spec.dataFrom[0].rewrite[0]")),
        }
        let _ = rewrite::rewrite_map(&ops, data, "spec.dataFrom[0]", &no_transform);
    }
}
