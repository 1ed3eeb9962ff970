//! Joins Wikitext's one-line-per-row parquet back into articles.
//!
//! The HF parquet files of `Salesforce/wikitext` hold one line of the original
//! `wiki.{train,valid,test}.raw` per row (`" = Title = \n"`, `""` for a blank line, …).
//! An article starts at a title line: `" = "`, a title, `" = "` with exactly one `=` on each
//! side (`" = = Section = = "` is a heading inside the article). Each article becomes one
//! document, so it gets its own end-of-text token like the documents of other sources.

/// Whether `line` (with or without its newline) starts a new article.
pub fn is_article_title(line: &str) -> bool {
    let s = line.trim_end_matches(['\n', '\r']);
    s.len() > 6
        && s.starts_with(" = ")
        && s.ends_with(" = ")
        && !s.starts_with(" = = ")
        && !s.ends_with(" = = ")
}

/// Accumulates rows; hands out finished articles.
#[derive(Debug, Default)]
pub struct ArticleJoiner {
    current: String,
}

impl ArticleJoiner {
    /// An empty joiner.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one row; returns the previous article when `row` starts a new one.
    ///
    /// Rows without a trailing newline (blank lines are stored as `""`) get one, so the
    /// article reads as the original file did. Text before the first title that is only
    /// whitespace is dropped.
    pub fn push(&mut self, row: &str) -> Option<String> {
        let finished = if is_article_title(row) {
            self.take()
        } else {
            None
        };
        self.current.push_str(row);
        if !row.ends_with('\n') {
            self.current.push('\n');
        }
        finished
    }

    /// The last article (call at the end of a split).
    pub fn finish(&mut self) -> Option<String> {
        self.take()
    }

    fn take(&mut self) -> Option<String> {
        let doc = std::mem::take(&mut self.current);
        if doc.trim().is_empty() {
            None
        } else {
            Some(doc)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_have_exactly_one_equals_sign_each_side() {
        assert!(is_article_title(" = Valkyria Chronicles III = \n"));
        assert!(is_article_title(
            " = Tower Building of the Little Rock Arsenal = "
        ));
        assert!(!is_article_title(" = = Gameplay = = \n"));
        assert!(!is_article_title(" = = = Plot = = = \n"));
        assert!(!is_article_title(" The = sign \n"));
        assert!(!is_article_title(""));
        assert!(!is_article_title(" = \n"));
    }

    #[test]
    fn rows_join_into_articles() {
        let rows = [
            "",
            " = A = \n",
            "",
            " text a \n",
            " = = Sub = = \n",
            " more \n",
            " = B = \n",
            " text b \n",
            "",
        ];
        let mut j = ArticleJoiner::new();
        let mut docs: Vec<String> = rows.iter().filter_map(|r| j.push(r)).collect();
        docs.extend(j.finish());
        assert_eq!(
            docs,
            vec![
                " = A = \n\n text a \n = = Sub = = \n more \n".to_string(),
                " = B = \n text b \n\n".to_string(),
            ]
        );
        assert_eq!(j.finish(), None);
    }
}
