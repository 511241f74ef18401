//! Reading credentials from request headers, one way everywhere (admin
//! token, JWT tenants).

/// The token of an `Authorization` value in the Bearer scheme. The scheme
/// name is case-insensitive (RFC 9110 §11.1) and may be followed by more
/// than one space; `None` for another scheme or an empty token.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim_start().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_scheme_is_case_insensitive() {
        for value in ["Bearer abc", "bearer abc", "BEARER abc", "bEaReR  abc "] {
            assert_eq!(bearer_token(value), Some("abc"), "{value}");
        }
    }

    #[test]
    fn other_schemes_and_empty_tokens_are_not_bearer_tokens() {
        for value in ["Basic abc", "Bearerabc", "Bearer ", "Bearer", "", "abc"] {
            assert_eq!(bearer_token(value), None, "{value}");
        }
    }
}
