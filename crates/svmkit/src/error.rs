//! Errors at the library boundary.
//!
//! Linux-named operations fail the way Linux fails: with an errno. [`Errno`] carries
//! the Linux name and number of each code the model can return, so a test can assert
//! `Err(Errno::EINTR)` exactly where the kernel would return `-EINTR`.

use thiserror::Error;

/// A Linux error number, as returned (negated) by the kernel function the model mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Error)]
#[non_exhaustive]
pub enum Errno {
    /// Operation not permitted (1).
    #[error("EPERM: operation not permitted")]
    EPERM,
    /// No such file or directory; used by the model as "no entry" (2).
    #[error("ENOENT: no such entry")]
    ENOENT,
    /// No such device or address (6): a page_idle bitmap offset beyond the last frame.
    #[error("ENXIO: no such device or address")]
    ENXIO,
    /// Bad file descriptor (9): the model has no files, so file mappings fail this way.
    #[error("EBADF: bad file descriptor")]
    EBADF,
    /// Interrupted by a fatal signal (4).
    #[error("EINTR: interrupted (fatal signal pending)")]
    EINTR,
    /// Try again (11).
    #[error("EAGAIN: resource temporarily unavailable")]
    EAGAIN,
    /// Out of memory (12).
    #[error("ENOMEM: out of memory")]
    ENOMEM,
    /// Bad address (14).
    #[error("EFAULT: bad address")]
    EFAULT,
    /// Permission denied (13).
    #[error("EACCES: permission denied")]
    EACCES,
    /// Device or resource busy (16).
    #[error("EBUSY: device or resource busy")]
    EBUSY,
    /// File exists (17).
    #[error("EEXIST: already exists")]
    EEXIST,
    /// Invalid argument (22).
    #[error("EINVAL: invalid argument")]
    EINVAL,
    /// Function not implemented (38): the model's answer for a kernel interface the
    /// selected profile's era does not have.
    #[error("ENOSYS: function not implemented")]
    ENOSYS,
    /// Value too large for defined data type (75).
    #[error("EOVERFLOW: value too large")]
    EOVERFLOW,
    /// Operation not supported (95).
    #[error("EOPNOTSUPP: operation not supported")]
    EOPNOTSUPP,
}

impl Errno {
    /// Every code the model can return, in Linux's numbering order.
    pub const ALL: [Errno; 15] = [
        Errno::EPERM,
        Errno::ENOENT,
        Errno::EINTR,
        Errno::ENXIO,
        Errno::EBADF,
        Errno::EAGAIN,
        Errno::ENOMEM,
        Errno::EACCES,
        Errno::EFAULT,
        Errno::EBUSY,
        Errno::EEXIST,
        Errno::EINVAL,
        Errno::ENOSYS,
        Errno::EOVERFLOW,
        Errno::EOPNOTSUPP,
    ];

    /// The positive Linux errno value (x86-64 numbering).
    pub const fn code(self) -> i32 {
        match self {
            Errno::EPERM => 1,
            Errno::ENOENT => 2,
            Errno::EINTR => 4,
            Errno::ENXIO => 6,
            Errno::EBADF => 9,
            Errno::EAGAIN => 11,
            Errno::ENOMEM => 12,
            Errno::EACCES => 13,
            Errno::EFAULT => 14,
            Errno::EBUSY => 16,
            Errno::EEXIST => 17,
            Errno::EINVAL => 22,
            Errno::ENOSYS => 38,
            Errno::EOVERFLOW => 75,
            Errno::EOPNOTSUPP => 95,
        }
    }

    /// The Linux name of the code, e.g. `"EINTR"`.
    pub const fn name(self) -> &'static str {
        match self {
            Errno::EPERM => "EPERM",
            Errno::ENOENT => "ENOENT",
            Errno::EINTR => "EINTR",
            Errno::ENXIO => "ENXIO",
            Errno::EBADF => "EBADF",
            Errno::EAGAIN => "EAGAIN",
            Errno::ENOMEM => "ENOMEM",
            Errno::EACCES => "EACCES",
            Errno::EFAULT => "EFAULT",
            Errno::EBUSY => "EBUSY",
            Errno::EEXIST => "EEXIST",
            Errno::EINVAL => "EINVAL",
            Errno::ENOSYS => "ENOSYS",
            Errno::EOVERFLOW => "EOVERFLOW",
            Errno::EOPNOTSUPP => "EOPNOTSUPP",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Errno;

    #[test]
    fn errno_codes_match_linux_x86_64() {
        assert_eq!(Errno::EINTR.code(), 4);
        assert_eq!(Errno::ENOMEM.code(), 12);
        assert_eq!(Errno::EOPNOTSUPP.code(), 95);
        assert_eq!(Errno::ENOSYS.code(), 38);
        assert_eq!(Errno::EBUSY.name(), "EBUSY");
        assert!(Errno::EFAULT.to_string().starts_with("EFAULT"));
    }
}
