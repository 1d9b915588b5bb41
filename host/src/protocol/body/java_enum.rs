//! Java enums as fastjson writes and reads them.
//!
//! fastjson writes an enum by its constant name (`"CLUSTERING"`) and reads either the name or the
//! ordinal (reference 1.8). `java_enum!` declares a Rust enum together with its Java names, in
//! Java declaration order so that the position is the ordinal, and derives both directions.

/// Declares an enum whose serde form is the Java constant name, and which also accepts the Java
/// ordinal when decoding. List the variants in Java declaration order.
macro_rules! java_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $java:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in Java declaration order: the index is the Java ordinal.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The Java constant name, as it appears on the wire.
            pub fn java_name(self) -> &'static str {
                match self {
                    $(Self::$variant => $java),+
                }
            }

            /// The value with this Java constant name.
            pub fn from_java_name(name: &str) -> Option<Self> {
                match name {
                    $($java => Some(Self::$variant),)+
                    _ => None,
                }
            }

            /// The value with this Java ordinal (fastjson accepts ordinals on read).
            pub fn from_ordinal(ordinal: u64) -> Option<Self> {
                Self::ALL.get(usize::try_from(ordinal).ok()?).copied()
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.java_name())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.java_name())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D>(deserializer: D) -> Result<Self, D::Error>
            where
                D: ::serde::Deserializer<'de>,
            {
                struct JavaEnumVisitor;

                impl ::serde::de::Visitor<'_> for JavaEnumVisitor {
                    type Value = $name;

                    fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        write!(f, "a {} name or ordinal", stringify!($name))
                    }

                    fn visit_str<E: ::serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        $name::from_java_name(v).ok_or_else(|| {
                            E::invalid_value(::serde::de::Unexpected::Str(v), &self)
                        })
                    }

                    fn visit_u64<E: ::serde::de::Error>(self, v: u64) -> Result<$name, E> {
                        $name::from_ordinal(v).ok_or_else(|| {
                            E::invalid_value(::serde::de::Unexpected::Unsigned(v), &self)
                        })
                    }

                    fn visit_i64<E: ::serde::de::Error>(self, v: i64) -> Result<$name, E> {
                        u64::try_from(v)
                            .ok()
                            .and_then($name::from_ordinal)
                            .ok_or_else(|| {
                                E::invalid_value(::serde::de::Unexpected::Signed(v), &self)
                            })
                    }
                }

                deserializer.deserialize_any(JavaEnumVisitor)
            }
        }
    };
}
