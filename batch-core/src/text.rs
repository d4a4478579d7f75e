//! Bounding text that comes from untrusted code (a plugin's refusal or trap message) before it
//! reaches logs, activity failures and workflow results, whose payloads Temporal caps at 2 MB.

/// The most bytes of a plugin's message kept; the rest is replaced by a note of its length.
pub const MAX_MESSAGE_BYTES: usize = 2048;

/// `text` if it is at most `max` bytes, else its first `max` bytes (cut at a character
/// boundary) followed by `... [truncated: N bytes in all]`.
pub fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}... [truncated: {} bytes in all]",
        &text[..end],
        text.len()
    )
}

/// [`bounded`] at [`MAX_MESSAGE_BYTES`].
pub fn bounded_message(text: &str) -> String {
    bounded(text, MAX_MESSAGE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_whole() {
        assert_eq!(bounded("", 4), "");
        assert_eq!(bounded("abcd", 4), "abcd");
    }

    #[test]
    fn long_text_is_cut_and_says_how_long_it_was() {
        assert_eq!(bounded("abcdef", 4), "abcd... [truncated: 6 bytes in all]");
        let huge = "x".repeat(8 << 20);
        let cut = bounded_message(&huge);
        assert!(cut.len() < MAX_MESSAGE_BYTES + 64, "{}", cut.len());
        assert!(
            cut.ends_with("... [truncated: 8388608 bytes in all]"),
            "{cut}"
        );
    }

    #[test]
    fn the_cut_never_splits_a_character() {
        // 'é' is two bytes: a cut at 3 would fall inside the second one.
        assert_eq!(bounded("éé", 3), "é... [truncated: 4 bytes in all]");
        for max in 0..12 {
            let cut = bounded("日本語のテキスト", max);
            assert!(cut.len() <= max + 40, "{max}: {cut}");
        }
    }
}
