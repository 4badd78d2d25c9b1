//! qilinctl support library.
