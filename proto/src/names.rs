//! The one spelling of each closed set of names on the wire (the serde names), for code that
//! stores them as text. With the `sql` feature (the server's) they convert to and from
//! SQLite text directly; an unknown stored name is an error, never a default.

/// A text that is not one of its type's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    pub what: &'static str,
    pub value: String,
}

impl std::fmt::Display for UnknownName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown {} {:?}", self.what, self.value)
    }
}

impl std::error::Error for UnknownName {}

macro_rules! spelled {
    ($name:ty, $what:literal { $($variant:path = $text:literal,)+ }) => {
        impl $name {
            pub const ALL: &'static [$name] = &[$($variant,)+];

            /// The serde name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($variant => $text,)+
                }
            }

            pub fn parse(s: &str) -> Result<$name, UnknownName> {
                match s {
                    $($text => Ok($variant),)+
                    _ => Err(UnknownName { what: $what, value: s.chars().take(64).collect() }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        #[cfg(feature = "sql")]
        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }

        #[cfg(feature = "sql")]
        impl rusqlite::types::FromSql for $name {
            fn column_result(
                v: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<$name> {
                <$name>::parse(v.as_str()?)
                    .map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
            }
        }
    };
}

spelled!(crate::Phase, "phase" {
    crate::Phase::Waiting = "waiting",
    crate::Phase::Chainloading = "chainloading",
    crate::Phase::Installing = "installing",
    crate::Phase::Written = "written",
    crate::Phase::Installed = "installed",
    crate::Phase::Failed = "failed",
});

spelled!(crate::ImageFormat, "image format" {
    crate::ImageFormat::Raw = "raw",
    crate::ImageFormat::RawGz = "raw.gz",
    crate::ImageFormat::RawXz = "raw.xz",
    crate::ImageFormat::RawZst = "raw.zst",
    crate::ImageFormat::Qcow2 = "qcow2",
});

spelled!(crate::Firmware, "firmware" {
    crate::Firmware::Bios = "bios",
    crate::Firmware::Uefi = "uefi",
});

spelled!(crate::Transport, "transport" {
    crate::Transport::Nvme = "nvme",
    crate::Transport::Sata = "sata",
    crate::Transport::Sas = "sas",
    crate::Transport::Scsi = "scsi",
    crate::Transport::Virtio = "virtio",
    crate::Transport::Usb = "usb",
    crate::Transport::Mmc = "mmc",
    crate::Transport::Other = "other",
});

#[cfg(test)]
mod tests {
    use crate::{Firmware, Phase, Transport};

    fn serde_name<T: serde::Serialize>(v: T) -> String {
        serde_json::to_value(v)
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn spellings_are_the_serde_names() {
        for f in crate::ImageFormat::ALL {
            assert_eq!(crate::ImageFormat::parse(f.as_str()), Ok(*f));
            assert_eq!(serde_json::to_value(f).unwrap(), f.as_str());
        }
        for p in Phase::ALL {
            assert_eq!(p.as_str(), serde_name(p));
            assert_eq!(Phase::parse(p.as_str()), Ok(*p));
        }
        for f in Firmware::ALL {
            assert_eq!(f.as_str(), serde_name(f));
            assert_eq!(Firmware::parse(f.as_str()), Ok(*f));
        }
        for t in Transport::ALL {
            assert_eq!(t.as_str(), serde_name(t));
            assert_eq!(Transport::parse(t.as_str()), Ok(*t));
        }
        assert_eq!(
            Phase::parse("dancing").unwrap_err().to_string(),
            "unknown phase \"dancing\""
        );
    }
}
