"""Operations: command line, configuration, control commands."""
