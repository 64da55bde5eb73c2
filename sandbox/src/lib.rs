//! Privilege dropping and confinement for each owampd role.
