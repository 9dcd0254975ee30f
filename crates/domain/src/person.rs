//! A person as the registry knows them: found by an identity document. Mainland residents
//! carry a resident ID card (checked by GB 11643); others a passport or another document
//! (Hong Kong/Macao/Taiwan permits, foreigners' permanent residence cards), checked for shape only.

use crate::FieldError;
use crate::ident::IdNumber;
use chrono::NaiveDate;

labelled! {
    /// The identity document a person is registered by.
    DocumentKind {
        IdCard = "id_card", "居民身份证", "Resident ID card";
        Passport = "passport", "护照", "Passport";
        Other = "other", "其他证件", "Other document";
    }
}

/// A validated document: its kind and its number as stored and indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub kind: DocumentKind,
    pub number: String,
}

impl Document {
    /// `parse`, for a document given now for a person: an ID card's date of birth may not be
    /// after `today` (`IdNumber::parse_born_by`).
    pub fn parse_born_by(kind_field: &str, number_field: &str, kind: &str, number: &str, today: NaiveDate) -> Result<Document, FieldError> {
        let d = Self::parse(kind_field, number_field, kind, number)?;
        if d.kind == DocumentKind::IdCard {
            IdNumber::parse_born_by(number_field, &d.number, today)?;
        }
        Ok(d)
    }

    /// `kind` empty means an ID card, the common case at a sampling desk.
    pub fn parse(kind_field: &str, number_field: &str, kind: &str, number: &str) -> Result<Document, FieldError> {
        let kind = match kind.trim() {
            "" => DocumentKind::IdCard,
            k => DocumentKind::parse(k).ok_or_else(|| {
                FieldError::new(
                    kind_field,
                    "document_kind_unknown",
                    "证件类型应为 id_card、passport 或 other",
                    "the document kind is id_card, passport or other",
                )
            })?,
        };
        let number = match kind {
            DocumentKind::IdCard => IdNumber::parse(number_field, number)?.as_str().to_string(),
            DocumentKind::Passport | DocumentKind::Other => {
                let n: String = number.trim().to_ascii_uppercase();
                if n.is_empty() {
                    return Err(FieldError::required(number_field));
                }
                let max = if kind == DocumentKind::Passport { 20 } else { 40 };
                if n.len() < 5 || n.len() > max || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    return Err(FieldError::new(
                        number_field,
                        "document_number_format",
                        format!("证件号码应为 5–{max} 位字母或数字"),
                        format!("a document number has 5–{max} letters or digits"),
                    ));
                }
                n
            }
        };
        Ok(Document { kind, number })
    }

    /// What the blind index is computed over: the kind keeps a passport number from colliding
    /// with an ID number of the same characters.
    pub fn index_key(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.number)
    }

    /// Shown in lists: the first and last characters only.
    pub fn mask(&self) -> String {
        let chars: Vec<char> = self.number.chars().collect();
        let (head, tail) = match self.kind {
            DocumentKind::IdCard => (6, 4),
            _ => (2, 2),
        };
        if chars.len() <= head + tail {
            return "*".repeat(chars.len());
        }
        let mut out: String = chars[..head].iter().collect();
        out.push_str(&"*".repeat(chars.len() - head - tail));
        out.extend(&chars[chars.len() - tail..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_checked_by_kind() {
        let id = Document::parse("k", "n", "", "11010519491231002x").unwrap();
        assert_eq!(id.kind, DocumentKind::IdCard);
        assert_eq!(id.number, "11010519491231002X");
        assert_eq!(id.mask(), "110105********002X");
        assert_eq!(id.index_key(), "id_card:11010519491231002X");
        assert_eq!(Document::parse("k", "n", "id_card", "110105194912310021").unwrap_err().code, "id_number_check");
        let p = Document::parse("k", "n", "passport", " e1234567 ").unwrap();
        assert_eq!((p.kind, p.number.as_str(), p.mask()), (DocumentKind::Passport, "E1234567", "E1****67".to_string()));
        assert_eq!(Document::parse("k", "n", "passport", "E1").unwrap_err().code, "document_number_format");
        assert_eq!(Document::parse("k", "n", "passport", "E1234567 89").unwrap_err().code, "document_number_format");
        assert_eq!(Document::parse("k", "n", "passport", "  ").unwrap_err().code, "required");
        assert_eq!(Document::parse("k", "n", "licence", "E1234567").unwrap_err().field, "k");
        assert_ne!(p.index_key(), Document::parse("k", "n", "other", "E1234567").unwrap().index_key());
    }
}
