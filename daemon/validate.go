package daemon

// Validate checks the configuration as daemon.New would, without starting
// anything: jevmd --validate, and jevmd before it touches the host.
func (c Config) Validate() error {
	if err := c.Network.Validate(); err != nil {
		return err
	}
	if err := ValidateLogConfig(c.DefaultLogConfig); err != nil {
		return err
	}
	return validateUlimits(c.DefaultUlimits)
}
