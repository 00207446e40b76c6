//! The router over arbitrary requests (proptest): it never panics, always
//! answers JSON, and only 200, 400, 404 or 405.

use proptest::prelude::*;

proptest! {
    #[test]
    fn any_path_gets_a_json_answer(is_get in any::<bool>(), path in "\\PC{0,80}", random in any::<u64>()) {
        let reply = prime_api::route(is_get, &path, || random);
        prop_assert!([200, 400, 404, 405].contains(&reply.status), "{} for {path:?}", reply.status);
        prop_assert!(serde_json::from_str::<serde_json::Value>(&reply.body).is_ok(), "{}", reply.body);
    }
}
