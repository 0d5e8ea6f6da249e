"""Know the robot: models, forward kinematics, kinematic rendering of link masks and depth, calibration.

Heavy libraries (trimesh, mujoco, scipy.optimize) are imported inside the
functions that need them; importing this package costs only numpy.
The whole calibration chain is ``masktrack.robot.calibrate.calibrate`` (not
re-exported here, so that ``masktrack.robot.calibrate`` stays the module).
"""

from masktrack.robot.calibrate import (
    Calibration,
    CalibrationError,
    CameraRefinement,
    CameraView,
    EEFit,
    check_calibration,
    fit_base_from_ee,
    refine_camera,
    refine_robot_from_depth,
)
from masktrack.robot.model import RobotModel, RobotModelError
from masktrack.robot.render import RobotRender, occlude, render
from masktrack.robot.state import RobotState

__all__ = [
    "Calibration",
    "CalibrationError",
    "CameraRefinement",
    "CameraView",
    "EEFit",
    "RobotModel",
    "RobotModelError",
    "RobotRender",
    "RobotState",
    "check_calibration",
    "fit_base_from_ee",
    "occlude",
    "refine_camera",
    "refine_robot_from_depth",
    "render",
]
